"""A Lambda function ARN's parts, as greengrasssdk's Lambda client uses them (stand-in, TEST EQUIPMENT)."""


class FunctionArnFields:
    def __init__(self, function_arn):
        parts = function_arn.split(":")
        if len(parts) < 7 or parts[0] != "arn" or parts[5] != "function":
            raise ValueError("not a Lambda function ARN: %s" % function_arn)
        self.unqualified_arn = ":".join(parts[:7])
        self.qualifier = parts[7] if len(parts) > 7 else ""

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        return unqualified_arn + (":" + qualifier if qualifier else "")
