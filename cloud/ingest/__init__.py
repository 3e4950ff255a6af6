"""The receiver: MQTT (shared subscription, manual acks) → validation → batched COPY into the store."""
