"""The same jobs on a Ray cluster: pipeline actors read, detect and embed; the driver writes to the
gallery (the truth) through the same calls as a single-process job. Ray is an optional extra
(``in the facesys checkout, pip install -e ".[ray]"``); nothing here is imported unless a job is asked to run on Ray.
See README.md here for what runs on Ray so far."""
