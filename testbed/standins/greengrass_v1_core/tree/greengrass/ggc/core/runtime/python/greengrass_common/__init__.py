"""Stand-in for the V1 core runtime's greengrass_common package (TEST EQUIPMENT): what greengrasssdk imports."""
