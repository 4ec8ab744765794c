// Generate Python models (pydantic) from an AsyncAPI document with Modelina
// (@asyncapi/modelina), a third-party code generator: `node generate_python.mjs FILE OUTDIR`.
//
// OUTDIR becomes a Python package named after its last path segment (the models import
// each other as `<package>.<module>`): one module per message payload and per schema one
// references, named in snake_case (connect_reply.py holds ConnectReply). Prints one JSON
// object: {"package": "...", "models": {"ConnectReply": "connect_reply", ...}}.
//
// One option works around Modelina 5.10's pydantic preset: the preset quotes a constant
// itself (`Field(default='<value>')`), while Python's default constant constraint already
// returns a quoted literal for a string (`'connect'`), which renders `default=''connect''`,
// a syntax error. The constraint below returns a string constant bare. Constants that are
// not strings (`ok: true`, `version: 1`) still render as `default='undefined'`: the preset
// always quotes, so no option fixes them; a parsed frame carries them, so reading works.
import { mkdirSync, readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import {
  FormatHelpers,
  Logger,
  PYTHON_PYDANTIC_PRESET,
  PythonFileGenerator,
} from "@asyncapi/modelina";

const [file, outdir] = process.argv.slice(2);
if (!file || !outdir) {
  process.stderr.write("usage: node generate_python.mjs ASYNCAPI_FILE OUTDIR\n");
  process.exit(2);
}
// Modelina's warnings go to stderr. Expected ones: "Overwriting existing model" (a payload
// several operations share), "cannot generate this type of model" (the per-channel union
// of messages: Python models have no unions) and "Failed to convert JsonValue" (the
// publish's `data`, any JSON value, becomes Any).
const warn = (...args) => process.stderr.write(`modelina: ${args.map(String).join(" ")}\n`);
Logger.setLogger({ debug() {}, info() {}, warn, error: warn });
const directory = resolve(outdir);
const packageName = basename(directory);
mkdirSync(directory, { recursive: true });

const generator = new PythonFileGenerator({
  presets: [PYTHON_PYDANTIC_PRESET],
  constraints: {
    constant: ({ constrainedMetaModel }) => {
      const constant = constrainedMetaModel.options.const;
      return typeof constant?.originalInput === "string" ? constant.originalInput : undefined;
    },
  },
});
const models = await generator.generateToFiles(
  readFileSync(file, "utf8"),
  directory,
  { packageName },
  true,
);
const names = Object.fromEntries(
  models.map((model) => [model.modelName, FormatHelpers.snakeCase(model.modelName)]),
);
process.stdout.write(JSON.stringify({ package: packageName, models: names }, null, 1) + "\n");
