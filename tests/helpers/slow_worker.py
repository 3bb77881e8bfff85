"""A real `hub worker` process that stops in the middle of an event — after the pipeline has written the
person, lead and touch, before the commit — and signals that it is there. The test then kills it -9.

usage: python -m tests.helpers.slow_worker CONFIG MARKER_FILE
"""

import sys
import time
from pathlib import Path

import hub.pipeline.process as pipeline
from hub.cli import main

config, marker = sys.argv[1], Path(sys.argv[2])
original_attach_touch = pipeline.attach_touch


def attach_touch_then_hang(*args, **kwargs):
    touch = original_attach_touch(*args, **kwargs)
    marker.write_text("inside the transaction")
    time.sleep(600)
    return touch


pipeline.attach_touch = attach_touch_then_hang
sys.argv = ["hub", "worker", "--config", config]
main()
