"""omnistitch connectors: channel data in, Avro ChannelEvents out to Kafka."""
