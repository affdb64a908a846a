"""Serving: face detection, cropping and batched classification (pure cores) behind Ray Serve deployments."""
