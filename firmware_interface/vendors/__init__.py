"""Decoders for sensors a runner can buy (pure: no I/O). Streaming goes through firmware_interface.ble."""
