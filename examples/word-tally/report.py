"""word-tally, step 2: words.csv (every word, inline as base64) and the top words.

Its return value is the job's output: {"result", "files"}.
"""

import base64
import csv
import io


def handler(event, context):
    tally = event["tally"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["word", "count"])
    writer.writerows(tally["counts"])
    top = [{"word": w, "count": n} for w, n in tally["counts"][: event["top"]]]
    return {
        "result": {"totalWords": tally["totalWords"], "distinctWords": tally["distinctWords"], "top": top},
        "files": [{
            "name": "words.csv",
            "mimeType": "text/csv",
            "contentBase64": base64.b64encode(out.getvalue().encode()).decode(),
        }],
    }
