// Parse and validate an AsyncAPI document with the official parser
// (@asyncapi/parser): `node validate.mjs FILE`. Prints one JSON object:
// {"valid": bool, "version": "...", "diagnostics": [{"severity", "code", "message", "path"}]}.
// Exit 0 when the document parsed with no error (warnings are reported, not fatal).
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const text = readFileSync(process.argv[2], "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const names = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([k, v]) => [v, k]));
const report = {
  valid: document !== undefined && !diagnostics.some((d) => d.severity === DiagnosticSeverity.Error),
  version: document ? document.version() : null,
  diagnostics: diagnostics.map((d) => ({
    severity: names[d.severity] ?? String(d.severity),
    code: String(d.code),
    message: d.message,
    path: d.path.join("."),
  })),
};
process.stdout.write(JSON.stringify(report, null, 1) + "\n");
process.exit(report.valid ? 0 : 1);
