// table-report's step: a Lambda handler (Node.js 22, ES module). The event is the job
// ({jobId, type, input, outputUri}); the return value is the job's output ({result, files}).
// report.html is written to outputUri, so it becomes a result file of the job.

import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const escape = (v) =>
  String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export const handler = async (event) => {
  const { title, columns, rows } = event.input;
  rows.forEach((row, i) => {
    if (row.length !== columns.length) {
      // Thrown errors fail the task with error = the class name (RangeError), as on Lambda.
      throw new RangeError(`row ${i + 1} has ${row.length} values; the table has ${columns.length} columns`);
    }
  });
  const sums = {};
  columns.forEach((c, j) => {
    const values = rows.map((r) => r[j]);
    if (values.length > 0 && values.every((v) => typeof v === "number")) {
      sums[c] = values.reduce((a, b) => a + b, 0);
    }
  });
  const html = `<!doctype html><meta charset="utf-8"><title>${escape(title)}</title>
<h1>${escape(title)}</h1>
<table border="1"><tr>${columns.map((c) => `<th>${escape(c)}</th>`).join("")}</tr>
${rows.map((r) => `<tr>${r.map((v) => `<td>${escape(v)}</td>`).join("")}</tr>`).join("\n")}
</table>`;
  await writeOutput(event.outputUri, "report.html", html, "text/html");
  return { result: { title, rows: rows.length, sums } };
};

// file:///… under longhaul serve, s3://bucket/prefix/ on AWS.
async function writeOutput(folderUri, name, body, contentType) {
  const u = new URL(folderUri);
  if (u.protocol === "file:") {
    const file = path.join(fileURLToPath(u), name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, body);
    return;
  }
  if (u.protocol === "s3:") {
    const { S3Client, PutObjectCommand } = await import("@aws-sdk/client-s3"); // in the Lambda runtime
    await new S3Client({}).send(
      new PutObjectCommand({ Bucket: u.host, Key: u.pathname.slice(1) + name, Body: body, ContentType: contentType }),
    );
    return;
  }
  throw new Error(`cannot write to ${folderUri}`);
}
