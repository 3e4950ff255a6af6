"""The uplink: the outbox on flash (`queue`) and the MQTT 5 link that empties it (`mqtt`)."""
