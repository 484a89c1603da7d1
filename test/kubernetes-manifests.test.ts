/**
 * deploy/kubernetes: every object validates against the Kubernetes API's
 * OpenAPI schemas (kubernetes-models; the ServiceMonitor against the
 * Prometheus Operator's CRD schema), kustomization.yaml lists them all, and
 * they fit together and with the service: selectors match the pod labels,
 * probes and the ServiceMonitor use the service's endpoints, the grace period
 * covers preStop plus SHUTDOWN_TIMEOUT, every env var is a setting sessiond
 * knows, and a broken object is rejected (the validator is really applied).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { parseDurationMs, SETTINGS } from "../src/config/config.js";

const DIR = "deploy/kubernetes";

interface Model {
  validate(): void;
}
type Manifest = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string } };

const MODELS: Record<string, new (data: never) => Model> = {
  "apps/v1 Deployment": Deployment,
  "v1 Service": Service,
  "policy/v1 PodDisruptionBudget": PodDisruptionBudget,
  "monitoring.coreos.com/v1 ServiceMonitor": ServiceMonitor,
};

function manifests(): { file: string; doc: Manifest }[] {
  const out: { file: string; doc: Manifest }[] = [];
  for (const file of readdirSync(DIR).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")) {
    for (const document of parseAllDocuments(readFileSync(join(DIR, file), "utf8"))) {
      assert.deepEqual(document.errors, [], `${file} is valid YAML`);
      out.push({ file, doc: document.toJS() as Manifest });
    }
  }
  return out;
}

function validate(doc: Manifest): void {
  const Model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  assert.ok(Model !== undefined, `a known kind: ${doc.apiVersion} ${doc.kind}`);
  new Model(doc as never).validate();
}

const all = manifests();
const one = <T>(kind: string): T => {
  const found = all.filter((m) => m.doc.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]?.doc as unknown as T;
};

/* Just the fields the checks read. */
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  image: string;
  ports: { name: string; containerPort: number }[];
  env: { name: string; value?: string }[];
  startupProbe: Probe;
  livenessProbe: Probe;
  readinessProbe: Probe;
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
}
interface DeploymentShape {
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: { terminationGracePeriodSeconds: number; containers: Container[] } };
  };
}
type Labels = { matchLabels: Record<string, string> };

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

describe("Kubernetes manifests", () => {
  it("the Deployment, Service, PodDisruptionBudget and ServiceMonitor are there, each valid against its API schema", () => {
    assert.deepEqual(all.map((m) => m.doc.kind).sort(), ["Deployment", "PodDisruptionBudget", "Service", "ServiceMonitor"]);
    for (const { file, doc } of all) {
      assert.doesNotThrow(() => validate(doc), `${file}: ${doc.kind}/${doc.metadata.name}`);
    }
  });

  it("the validator rejects what the API server would (a wrong type, a missing required field)", () => {
    const deployment = structuredClone(one<Manifest>("Deployment")) as unknown as DeploymentShape & Manifest;
    (deployment.spec.template.spec as unknown as Record<string, unknown>)["terminationGracePeriodSeconds"] = "thirty";
    assert.throws(() => validate(deployment));
    const service = structuredClone(one<Manifest>("Service")) as Manifest & { spec: { ports: Record<string, unknown>[] } };
    delete service.spec.ports[0]?.["port"];
    assert.throws(() => validate(service));
    const monitor = structuredClone(one<Manifest>("ServiceMonitor")) as Manifest & { spec: Record<string, unknown> };
    delete monitor.spec["selector"];
    assert.throws(() => validate(monitor));
  });

  it("kustomization.yaml lists every manifest", () => {
    const kustomization = parseAllDocuments(readFileSync(join(DIR, "kustomization.yaml"), "utf8"))[0]?.toJS() as { resources: string[] };
    assert.deepEqual([...kustomization.resources].sort(), [...new Set(all.map((m) => m.file))].sort());
  });

  it("fit together: selectors, ports, probes, drain, resources, settings", () => {
    const deployment = one<DeploymentShape>("Deployment");
    const podLabels = deployment.spec.template.metadata.labels;
    assert.ok(selects(deployment.spec.selector.matchLabels, podLabels), "the Deployment selects its pods");
    const service = one<{ metadata: { labels: Record<string, string> }; spec: { selector: Record<string, string>; ports: { name: string; targetPort: string }[] } }>("Service");
    assert.ok(selects(service.spec.selector, podLabels), "the Service selects the pods");
    assert.ok(selects(one<{ spec: { selector: Labels } }>("PodDisruptionBudget").spec.selector.matchLabels, podLabels), "the PDB covers the pods");
    const monitor = one<{ spec: { selector: Labels; endpoints: { port: string; path: string }[] } }>("ServiceMonitor");
    assert.ok(selects(monitor.spec.selector.matchLabels, service.metadata.labels), "the ServiceMonitor selects the Service");
    assert.deepEqual(monitor.spec.endpoints.map((e) => [e.port, e.path]), [["http", "/metrics"]]);

    const [container] = deployment.spec.template.spec.containers;
    assert.ok(container);
    assert.deepEqual(container.ports.map((p) => p.name), ["http"]);
    assert.equal(service.spec.ports[0]?.targetPort, "http");
    const env = new Map(container.env.map((e) => [e.name, e.value]));
    assert.equal(String(container.ports[0]?.containerPort), env.get("PORT"), "PORT is the container port");
    const known = new Set(SETTINGS.map((s) => s.env));
    for (const name of env.keys()) assert.ok(known.has(name), `${name} is a sessiond setting`);
    assert.equal(env.get("HOST"), "0.0.0.0");

    assert.deepEqual([container.startupProbe.httpGet?.path, container.livenessProbe.httpGet?.path, container.readinessProbe.httpGet?.path], ["/healthz", "/healthz", "/readyz"]);
    assert.ok(container.resources.requests?.["cpu"] && container.resources.requests["memory"] && container.resources.limits?.["memory"], "requests and a memory limit");

    const preStop = container.lifecycle?.preStop;
    const preStopSeconds = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command[1]);
    assert.ok(preStopSeconds > 0, "a preStop pause so endpoints drop the pod before it stops listening");
    const shutdownMs = parseDurationMs(env.get("SHUTDOWN_TIMEOUT") ?? "10s") ?? 0;
    assert.ok(deployment.spec.template.spec.terminationGracePeriodSeconds * 1000 > preStopSeconds * 1000 + shutdownMs, "the grace period covers preStop and the drain");
  });
});
