"""Input pipelines (TFDS, the embedded default data set) and image corruptions."""
