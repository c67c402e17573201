import Ajv, { type ValidateFunction } from 'ajv';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as argo from '@kubernetes-models/argo-cd/argoproj.io/v1alpha1';
import * as externalSecrets from '@kubernetes-models/external-secrets/external-secrets.io/v1beta1';
import * as gkeV1 from '@kubernetes-models/gke/networking.gke.io/v1';
import * as gkeV1beta1 from '@kubernetes-models/gke/networking.gke.io/v1beta1';
import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as core from 'kubernetes-models/v1';
import { idOf, type K8sObject } from './kustomize';
import type { Violation } from './tools';

/** A kubernetes-models class: constructed from plain data, `validate()` throws on a schema error. */
type ModelClass = new (data: never) => { validate(): void };

/** How one apiVersion/kind is validated. */
type Schema =
  | { kind: 'model'; model: ModelClass; source: string; asApiVersion?: string }
  | { kind: 'json-schema'; validate: ValidateFunction; source: string };

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });

function jsonSchema(file: string): ValidateFunction {
  return ajv.compile(JSON.parse(readFileSync(join(__dirname, '..', 'schemas', file), 'utf8')) as object);
}

const model = (m: ModelClass, source: string, asApiVersion?: string): Schema => ({ kind: 'model', model: m, source, asApiVersion });

/**
 * Every apiVersion/kind the manifests may use, and its schema. An object of any other type is a
 * violation: a new kind needs a schema here first.
 *
 * - Kubernetes core and apps: kubernetes-models 4.x (Kubernetes 1.31 OpenAPI).
 * - Argo CD: @kubernetes-models/argo-cd 2.x. GKE ManagedCertificate and FrontendConfig:
 *   @kubernetes-models/gke 4.x.
 * - External Secrets `external-secrets.io/v1`: the Node 20 line of
 *   @kubernetes-models/external-secrets (0.5) predates the v1 API, which the operator introduced as
 *   an unchanged promotion of v1beta1; the objects are checked against the v1beta1 schema.
 * - GKE BackendConfig and GMP PodMonitoring: JSON schemas in test/deploy/schemas, written from the
 *   published CRDs (see the `$comment` of each).
 */
const SCHEMAS: ReadonlyMap<string, Schema> = new Map<string, Schema>([
  ['v1/Namespace', model(core.Namespace, 'kubernetes-models')],
  ['v1/ServiceAccount', model(core.ServiceAccount, 'kubernetes-models')],
  ['v1/ConfigMap', model(core.ConfigMap, 'kubernetes-models')],
  ['v1/Secret', model(core.Secret, 'kubernetes-models')],
  ['v1/Service', model(core.Service, 'kubernetes-models')],
  ['apps/v1/Deployment', model(apps.Deployment, 'kubernetes-models')],
  ['autoscaling/v2/HorizontalPodAutoscaler', model(autoscaling.HorizontalPodAutoscaler, 'kubernetes-models')],
  ['policy/v1/PodDisruptionBudget', model(policy.PodDisruptionBudget, 'kubernetes-models')],
  ['networking.k8s.io/v1/NetworkPolicy', model(networking.NetworkPolicy, 'kubernetes-models')],
  ['networking.k8s.io/v1/Ingress', model(networking.Ingress, 'kubernetes-models')],
  ['networking.gke.io/v1/ManagedCertificate', model(gkeV1.ManagedCertificate, '@kubernetes-models/gke')],
  ['networking.gke.io/v1beta1/FrontendConfig', model(gkeV1beta1.FrontendConfig, '@kubernetes-models/gke')],
  [
    'cloud.google.com/v1/BackendConfig',
    { kind: 'json-schema', validate: jsonSchema('backendconfig.cloud.google.com.v1.schema.json'), source: 'test/deploy/schemas' },
  ],
  [
    'monitoring.googleapis.com/v1/PodMonitoring',
    { kind: 'json-schema', validate: jsonSchema('podmonitoring.monitoring.googleapis.com.v1.schema.json'), source: 'test/deploy/schemas' },
  ],
  [
    'external-secrets.io/v1/SecretStore',
    model(externalSecrets.SecretStore, '@kubernetes-models/external-secrets (v1beta1)', 'external-secrets.io/v1beta1'),
  ],
  [
    'external-secrets.io/v1/ExternalSecret',
    model(externalSecrets.ExternalSecret, '@kubernetes-models/external-secrets (v1beta1)', 'external-secrets.io/v1beta1'),
  ],
  ['argoproj.io/v1alpha1/AppProject', model(argo.AppProject, '@kubernetes-models/argo-cd')],
  ['argoproj.io/v1alpha1/ApplicationSet', model(argo.ApplicationSet, '@kubernetes-models/argo-cd')],
  ['argoproj.io/v1alpha1/Application', model(argo.Application, '@kubernetes-models/argo-cd')],
]);

/** Validates every object against its schema; `where` names the render target in messages. */
export function validateSchemas(objects: readonly K8sObject[], where: string): Violation[] {
  const violations: Violation[] = [];
  for (const object of objects) {
    const type = `${object.apiVersion}/${object.kind}`;
    const schema = SCHEMAS.get(type);
    const at = `${idOf(object)} in ${where}`;
    if (!schema) {
      violations.push({ where: at, rule: 'schema-known', message: `no schema for ${type}: add one to test/deploy/lib/schemas.ts` });
      continue;
    }
    const error = check(schema, object);
    if (error) violations.push({ where: at, rule: 'schema', message: `${type} (${schema.source}): ${error}` });
  }
  return violations;
}

function check(schema: Schema, object: K8sObject): string | undefined {
  if (schema.kind === 'json-schema') {
    return schema.validate(object) ? undefined : ajv.errorsText(schema.validate.errors, { dataVar: '' });
  }
  const data = schema.asApiVersion ? { ...object, apiVersion: schema.asApiVersion } : object;
  try {
    new schema.model(structuredClone(data) as never).validate();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
