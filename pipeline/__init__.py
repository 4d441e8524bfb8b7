"""omnistitch pipeline: identity stitching of omnichannel customer events on Kafka."""

__version__ = "0.1.0"
