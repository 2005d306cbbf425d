"""The reverse flow: exchange order-stream messages → order state → fills → positions."""
