"""What Kinema's generation nodes share: the model and conditioning objects that travel
between them, device and dtype choice, schedulers, and step progress. Built on diffusers.

diffusers, transformers and accelerate take seconds to import (diffusers pulls in
``torch._dynamo``) and are needed only while a generation node runs, so they load then.
Listing the nodes, serving the canvas and running image graphs never load them. The pattern,
for every module here and every model family added later:

- Light modules import only torch, numpy, PIL, safetensors, ``engine`` and other light
  modules at their top: ``bundle``, ``model_files``, ``device``, ``weights``, ``progress``,
  ``anchor``, ``schedulers``, ``windows``, ``acceleration``, ``loras``, ``placement``,
  ``video_vae``. Whatever a node declares (``INPUT_TYPES`` widget
  choices, socket types, defaults) lives in them; a diffusers class they need is named as a
  string (``schedulers``) or imported inside the function that calls it (``windows``).
- Heavy worker modules import diffusers/transformers at their top: ``loading``, ``latents``,
  ``keyframe``, ``video``, ``t5_encoders``, ``clip_vision``, and the ``families`` package
  (one module per model family, behind the contract in ``families/base.py``; nothing outside
  it tests which family a model is).
- Node declaration modules (``nodes/*.py``) import light modules at their top and a worker
  module inside the node's ``FUNCTION``, with a one-line comment saying why.

``tests/video/test_imports.py`` holds the line: describing every node loads none of them.
"""
