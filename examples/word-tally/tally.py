"""word-tally, step 1: count the words of the page (a file longhaul fetched for the job).

A Lambda handler: the event is the job ({"jobId", "type", "input", "outputUri"}), the return
value goes on to the next state. Runs the same on one machine (longhaul serve) and on AWS.
"""

import collections
import html
import json
import re
import sys

from longhaul_files import read_bytes


class NoWordsError(Exception):
    """The page has no words: the workflow catches it by this name."""


def progress(event, percent, message):
    # One line on stderr: longhaul shows it as the job's progress.
    print(json.dumps({"longhaulProgress": {"jobId": event.get("jobId"), "percent": percent, "message": message}}),
          file=sys.stderr, flush=True)


def handler(event, context):
    params = event["input"]
    progress(event, 10, "reading the page")
    text = read_bytes(params["page"]["uri"]).decode("utf-8", errors="replace")
    # Drop scripts, styles and tags; keep the words.
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", text)]
    words = [w for w in words if len(w) >= params.get("minLength", 3)]
    if not words:
        raise NoWordsError(f"the page has no words of {params.get('minLength', 3)} letters or more")
    progress(event, 60, f"counted {len(words)} words")
    counts = collections.Counter(words)
    return {"totalWords": len(words), "distinctWords": len(counts), "counts": counts.most_common()}
