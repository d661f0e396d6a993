"""The image-dataset registry: name -> fn(n, generator) -> (n, C, H, W) in [-1, 1]. A module of
its own: data.images fills it and the data package reads it, neither importing the other back."""
IMAGES: dict = {}
