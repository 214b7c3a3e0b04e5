"""``inputs_normalized``, in one room: ``measure.py`` (numpy measurements and the verdict, pure) and
``run.py`` (prepare, the adapter passes, the message). Importing the room loads only the
measurements; the run is loaded by ``api`` when the check runs."""

from .measure import *  # noqa: F401,F403 - the measurements are the room's public face
