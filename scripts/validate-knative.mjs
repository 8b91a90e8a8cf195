// Validate Knative Service manifests offline against the serving.knative.dev/v1 JSON schema
// (npm @kubernetes-models/knative, installed by scripts/install-tools.sh).
//   node scripts/validate-knative.mjs [--json] deploy/service.yaml [more.yaml ...]
// Prints "ok: FILE (Service NAME)" per document (with --json: the documents as one JSON array on
// stdout instead), or the schema errors on stderr; exit 1 on any error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const npmDir = join(process.env.PYFUNC_CACHE || join(homedir(), ".cache", "pyfunc"), "tools", "npm");
const modules = join(npmDir, "node_modules");
const yaml = createRequire(join(npmDir, "package.json"))("js-yaml");
const { Service } = await import(
  pathToFileURL(join(modules, "@kubernetes-models/knative/serving.knative.dev/v1/Service.js")).href
);

const args = process.argv.slice(2);
const asJson = args[0] === "--json";
const docs = [];
let failed = false;
for (const file of asJson ? args.slice(1) : args) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc) continue;
    const what = `${doc.kind} ${doc.metadata?.name ?? "?"}`;
    try {
      if (doc.apiVersion !== "serving.knative.dev/v1" || doc.kind !== "Service") {
        throw new Error(`expected a serving.knative.dev/v1 Service, got ${doc.apiVersion} ${doc.kind}`);
      }
      new Service(doc).validate();
      docs.push(doc);
      if (!asJson) console.log(`ok: ${file} (${what})`);
    } catch (err) {
      failed = true;
      console.error(`invalid: ${file} (${what}): ${err.message}`);
    }
  }
}
if (asJson) console.log(JSON.stringify(docs));
process.exit(failed ? 1 : 0);
