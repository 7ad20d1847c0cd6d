"""The variables the core sets for each function; greengrasssdk reads them at import (stand-in, TEST EQUIPMENT)."""

import os

AUTH_TOKEN = os.getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
MY_FUNCTION_ARN = os.getenv("MY_FUNCTION_ARN")
SHADOW_FUNCTION_ARN = os.getenv("SHADOW_FUNCTION_ARN")
ROUTER_FUNCTION_ARN = os.getenv("ROUTER_FUNCTION_ARN")
SECRETS_MANAGER_FUNCTION_ARN = os.getenv("SECRETS_MANAGER_FUNCTION_ARN")
