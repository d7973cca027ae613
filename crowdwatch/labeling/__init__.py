"""Teaching crowdwatch a new camera: keep frames locally, mark the people on them.

``point_labels`` reads and writes the head-point files (our ``image,annotator,x,y`` CSV with a
``counts.json`` of the images each annotator has done, and makesense.ai's point export);
``capture`` keeps a camera's frames on the edge box; ``label_server`` serves the marking page.
Nothing here needs torch or the server extras: it runs on an edge box (``crowdwatch[edge]``).
"""
