"""What Kinema's generation nodes share: the model and conditioning objects that travel
between them, device and dtype choice, schedulers, and step progress. Built on diffusers."""
