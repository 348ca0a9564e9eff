"""Video building blocks for the video nodes: decoding, encoding, containers and metadata,
interpolation and upscaling.

PyAV and OpenCV add about 16 MiB each to a process and are needed only while a video node
runs, so they load then: the node modules import ``decode``/``writer`` inside the node's
function, and ``flow``/``scenes`` import ``cv2`` where they call it. Listing nodes, serving the
canvas and running generation graphs never load them.
"""
