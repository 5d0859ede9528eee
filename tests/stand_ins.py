"""Processes the explorer tests start in place of `app.py search`."""

# Prints "ready", then which signal came, and exits 130 as `app.py search` does when stopped.
SIGNALLED_SEARCH = """
import signal, sys, time
def stop(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(120)
"""
