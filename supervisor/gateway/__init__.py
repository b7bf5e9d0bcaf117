"""Talking to OpenClaw gateways: wire models, device identity, the async client."""
