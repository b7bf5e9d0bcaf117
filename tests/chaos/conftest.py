"""The chaos suite builds its own worlds (tests/chaos/harness.py); nothing shared here."""
