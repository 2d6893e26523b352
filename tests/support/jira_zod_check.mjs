// Checks JSON values against the runtime (zod) schemas jira.js publishes for Jira Cloud's REST API v3.
// usage: node jira_zod_check.mjs <jira.js package dir>  < [{"where": ..., "schema": "IssueSchema", "value": ...}]
// prints [{"where": ..., "issues": ["path: message", ...]}] (issues empty when the value conforms).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const pkg = process.argv[2];
const models = await import(pathToFileURL(path.join(pkg, "dist/cloud/models/index.js")).href);
const checks = JSON.parse(readFileSync(0, "utf8"));
const out = checks.map(({ where, schema, value }) => {
  const zod = models[schema];
  if (!zod) return { where, issues: [`jira.js has no schema ${schema}`] };
  const result = zod.safeParse(value);
  return {
    where,
    issues: result.success ? [] : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`),
  };
});
process.stdout.write(JSON.stringify(out));
