"""The vision pipeline: image in, faces out (load -> detect -> align -> embed), with the quality
measures each face carries and the drawing of boxes. Decides nothing about who anyone is."""
