"""Stand-in for the AWS IoT Greengrass V1 core archive (test equipment, never shipped as the product)."""
