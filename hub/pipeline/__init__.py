"""Processing: a stored event becomes a lead — map, normalise, identify, touch, route — in the worker."""
