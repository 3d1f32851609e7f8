// Validates Kubernetes and KEDA manifests against their JSON schemas.
// Usage: node validate.mjs <file.yaml>...  Exit 1 (each problem on stderr) if any fails.
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";

const KUSTOMIZE = "kustomize.config.k8s.io/v1beta1";

function modulePath(apiVersion) {
  if (apiVersion.startsWith("keda.sh/")) return `@kubernetes-models/keda/${apiVersion}`;
  return `kubernetes-models/${apiVersion}`;
}

async function check(file, doc) {
  const { apiVersion, kind } = doc ?? {};
  if (!apiVersion || !kind) return [`${file}: a document without apiVersion and kind`];
  if (apiVersion === KUSTOMIZE) {
    return (doc.resources ?? [])
      .filter((r) => !existsSync(join(dirname(file), r)))
      .map((r) => `${file}: resource ${r} does not exist`);
  }
  let models;
  try {
    models = await import(modulePath(apiVersion));
  } catch {
    return [`${file}: no schema for apiVersion ${apiVersion}`];
  }
  const Model = models[kind];
  if (!Model) return [`${file}: no schema for ${apiVersion} ${kind}`];
  try {
    new Model(doc).validate();
    return [];
  } catch (error) {
    return [`${file}: ${kind} ${doc.metadata?.name ?? ""}: ${error.message}`];
  }
}

const problems = [];
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const parsed of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (parsed.errors.length) {
      problems.push(...parsed.errors.map((e) => `${file}: ${e.message}`));
      continue;
    }
    const doc = parsed.toJS();
    if (doc === null) continue;
    problems.push(...(await check(file, doc)));
    checked += 1;
  }
}
for (const p of problems) console.error(p);
console.log(`${checked} documents checked, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
