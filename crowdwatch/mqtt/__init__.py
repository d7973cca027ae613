"""MQTT transport shared by the edge, ingest, alerts and the simulator."""
