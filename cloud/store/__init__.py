"""The cloud store: schema migrations, device registry, partitions, retention, daily summaries."""
