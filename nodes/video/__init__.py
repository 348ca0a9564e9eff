"""Video building blocks for the video nodes: decoding, encoding, containers and metadata."""
