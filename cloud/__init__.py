"""The cloud side: receiver (MQTT → validation → store) and the query API."""
