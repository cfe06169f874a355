"""The photo library: faces found in folders of photos nobody labelled, unnamed until named.

```
library/
  files.py    which files a scan looks at (recursive walk) and which changed (size, mtime, sha256)
  scan.py     scan: files -> pipeline -> unnamed faces recorded one file per transaction; auto-attach
  clusters.py cluster the unnamed faces (facesys/decide/clustering.py), incrementally; list the clusters
  sheet.py    contact sheet PNG: one row of face crops per cluster
  names.py    name a cluster or faces (copied into the enrolled faces), unname, remove, find
```

Library faces are kept apart from the enrolled faces (``TruthStore`` library methods), so identify
never sees an unnamed face; naming one enrolls a copy of it. ``FaceSystem`` exposes each operation
(``scan``, ``cluster``, ``clusters``, ``name_cluster``, ``name_faces``, ``unname_faces``,
``remove_library_faces``, ``find``); the CLI is facesys/cli/library.py.
"""
