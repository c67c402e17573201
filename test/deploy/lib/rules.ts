import { idOf, type K8sObject, type Rendered } from './kustomize';
import type { Violation } from './tools';

// Partial shapes of the fields the rules read; the schema check has validated the rest.
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type?: string };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { configMapKeyRef?: { name: string }; secretKeyRef?: { name: string } };
}
interface EnvFrom {
  configMapRef?: { name: string };
  secretRef?: { name: string };
}
interface Probe {
  httpGet?: { path?: string; port?: number | string };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  failureThreshold?: number;
}
/** One port or peer block of a NetworkPolicy rule. */
interface PolicyPort {
  port?: number | string;
  protocol?: string;
}
interface PolicyPeer {
  ipBlock?: { cidr: string };
  namespaceSelector?: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
  };
  podSelector?: LabelSelector;
}
interface PolicyRule {
  from?: PolicyPeer[];
  to?: PolicyPeer[];
  ports?: PolicyPort[];
}
interface Container {
  name: string;
  image?: string;
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: EnvFrom[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  command?: string[];
  args?: string[];
  securityContext?: SecurityContext;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface Volume {
  name: string;
  emptyDir?: object;
  configMap?: { name: string };
  secret?: { secretName: string };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  securityContext?: SecurityContext;
  terminationGracePeriodSeconds?: number;
  volumes?: Volume[];
  serviceAccountName?: string;
  topologySpreadConstraints?: { labelSelector?: LabelSelector }[];
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string> };
  spec: PodSpec;
}
interface LabelSelector {
  matchLabels?: Record<string, string>;
}

/** A pod template found in a workload object. */
interface Workload {
  object: K8sObject;
  template: PodTemplate;
}

/** The drain the gateway does on SIGTERM unless configured (SPEC §2). */
const DEFAULT_DRAIN_SECONDS = 45;
/**
 * Slack between the end of the drain and SIGKILL, as the README's Operations section documents
 * (grace ≥ preStop + drain + 10): the gateway itself exits at the latest 5 s after the drain
 * (ending what is left, the last audit lines, closing Redis), and a loaded node needs a few more.
 */
const SHUTDOWN_MARGIN_SECONDS = 10;
/** The routes SPEC §6 gives the probes, the load balancer's health check and the scraper. */
const PROBE_PATHS = { readinessProbe: '/readyz', livenessProbe: '/healthz', startupProbe: '/healthz' } as const;
const READINESS_PATH = '/readyz';
const METRICS_PATH = '/metrics';
/** The gateway's listen port unless PORT says otherwise (SPEC §2). */
const DEFAULT_PORT = 8080;
/** Where Google Front Ends and their health checks come from (container-native load balancing). */
const GOOGLE_FRONT_END_RANGES = ['35.191.0.0/16', '130.211.0.0/22'];
/** The namespace of GKE's managed Prometheus collectors, which scrape what a PodMonitoring selects. */
const MANAGED_PROMETHEUS_NAMESPACE = 'gke-gmp-system';
/** Variables that carry secrets (SPEC §2): never a ConfigMap value or a literal in a manifest. */
const SECRET_VARIABLES = ['API_KEY_SERVER_PRODUCT_KEYS', 'API_KEY_SERVER_JWT_PUBLIC_KEYS', 'API_KEY_SERVER_HMAC_SECRETS'];
/**
 * The gateway's measured memory (README, "Container image"): RSS idle (~155 MB) and under load
 * (~350 MB). A memory request below the idle RSS overcommits the node from the first second.
 */
const IDLE_RSS_BYTES = 155e6;
const LOAD_RSS_BYTES = 350e6;
/** Headroom a memory limit keeps above the RSS under load (bursts, streams, GC timing). */
const LOAD_HEADROOM = 1.25;
/**
 * V8's heap ceiling in a memory cgroup of `limit` bytes: Node gives V8 the cgroup limit as the
 * machine's memory, V8 sizes old space at half of it but never below 256 MiB, and the young
 * generation is three semi-spaces (16 MiB each with the Dockerfile's --max-semi-space-size=16).
 * Measured: heap_size_limit 304 MiB under 384Mi and 512Mi, 560 MiB under 1Gi.
 */
const heapCeilingBytes = (limit: number): number => Math.max(256 * 2 ** 20, limit / 2) + 3 * 16 * 2 ** 20;
/** What the process holds outside V8's heap: code, buffers, sockets, gRPC (idle RSS − heap). */
const OFF_HEAP_BYTES = 100e6;

/** A Kubernetes quantity (`512Mi`, `1Gi`, `400M`, `1e9`) in bytes; NaN when unreadable. */
export function quantityBytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?(?:e\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (!match) return Number.NaN;
  const units: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(match[1]) * (match[2] ? units[match[2]] : 1);
}

/**
 * The gateway listens only once its secrets are read, which waits up to 30 s for a Secret Manager
 * that does not answer (libs/secrets bootTimeoutMs); the startup probe must outlast that wait, the
 * Redis connection and the boot itself on a CPU-limited pod, or the kubelet restarts it in a loop.
 */
const SECRETS_BOOT_WAIT_SECONDS = 30;
const STARTUP_MARGIN_SECONDS = 15;
/**
 * Variables the gateway (or Node) reads besides its API_KEY_SERVER_ ones, which the gateway itself
 * refuses at boot when it does not know them (the image checks boot every overlay's environment).
 * Any other name in a manifest is a typo or a setting nothing reads.
 */
const OTHER_KNOWN_VARIABLES = ['PORT', 'LOG_LEVEL', 'USE_SECRET_MANAGER', 'GOOGLE_CLOUD_PROJECT', 'NODE_EXTRA_CA_CERTS'];

/** Node flags the image's CMD sets, which a Deployment's `args` must keep. */
const NODE_FLAGS: [string, RegExp][] = [
  ['--max-semi-space-size=16', /^--max-semi-space-size=\d+$/],
  ['--expose-gc', /^--expose-gc$/],
];

/** What the External Secrets Operator's CRD writes into a remoteRef that leaves these out. */
const REMOTE_REF_DEFAULTS: Record<string, string> = { conversionStrategy: 'Default', decodingStrategy: 'None', metadataPolicy: 'None' };

/** Placeholders the base uses; an overlay must replace every one. */
const PLACEHOLDERS = /\b(PROJECT_ID|REGION)\b/;

function workloads(objects: readonly K8sObject[]): Workload[] {
  const found: Workload[] = [];
  for (const object of objects) {
    const spec = object.spec as { template?: PodTemplate; jobTemplate?: { spec?: { template?: PodTemplate } } } | undefined;
    if (['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'ReplicaSet'].includes(object.kind) && spec?.template) {
      found.push({ object, template: spec.template });
    } else if (object.kind === 'CronJob' && spec?.jobTemplate?.spec?.template) {
      found.push({ object, template: spec.jobTemplate.spec.template });
    }
  }
  return found;
}

/** Options of {@link checkWorkloadRules}. */
export interface RuleOptions {
  /** The render is an environment overlay (deployable): stricter rules on images and names. */
  overlay: boolean;
  /** The environment the render deploys; stage and prod may not keep development settings. */
  environment?: 'dev' | 'stage' | 'prod';
}

/**
 * Project rules for a rendered kustomization: pinned images, probes on the SPEC's routes and the
 * listen port, resources on every container, non-root with a read-only root and no capabilities,
 * a shutdown that fits the grace period, every referenced ConfigMap/Secret produced, selectors that
 * select, a Service, health check, scrape and NetworkPolicy that reach the listen port, a
 * disruption budget that lets a node drain, no secrets in ConfigMaps, no development settings in
 * stage or prod, and (for overlays) Artifact Registry images, no placeholders, one namespace.
 */
export function checkWorkloadRules(rendered: Rendered, options: RuleOptions): Violation[] {
  const v: Violation[] = [];
  const at = (object: K8sObject, container?: Container): string =>
    `${idOf(object)}${container ? ` container ${container.name}` : ''} in ${rendered.target}`;
  const add = (where: string, rule: string, message: string): void => {
    v.push({ where, rule, message });
  };
  const { objects } = rendered;
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o]));
  const secrets = new Set([
    ...objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name),
    ...objects
      .filter((o) => o.kind === 'ExternalSecret')
      .map((o) => (o.spec as { target?: { name?: string } } | undefined)?.target?.name ?? o.metadata.name),
  ]);
  const serviceAccounts = new Map(objects.filter((o) => o.kind === 'ServiceAccount').map((o) => [o.metadata.name, o]));
  const pods = workloads(objects);

  for (const { object, template } of pods) {
    const pod = template.spec;
    const podLabels = template.metadata?.labels ?? {};
    const volumes = new Map((pod.volumes ?? []).map((vol) => [vol.name, vol]));
    /** The ports the pod's (non-init) containers listen on. */
    const listening = new Set<number>();

    for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
      const where = at(object, container);
      const isInit = !pod.containers.includes(container);
      const env = effectiveEnv(container, configMaps);
      const listenPort = Number(env.get('PORT') ?? DEFAULT_PORT);
      if (!isInit) {
        listening.add(listenPort);
        if (!(container.ports ?? []).some((p) => p.containerPort === listenPort))
          add(where, 'ports', `the gateway listens on PORT=${listenPort}, which the container does not declare`);
        checkEnvironment(env, options, (m) => add(where, 'env-hygiene', m));
        const names = new Set([...env.keys(), ...(container.env ?? []).map((e) => e.name)]);
        for (const name of [...names].sort()) {
          if (!name.startsWith('API_KEY_SERVER_') && !OTHER_KNOWN_VARIABLES.includes(name))
            add(where, 'env-names', `${name} is no variable the gateway reads (SPEC §2, README "Configuration"): a typo?`);
        }
        // The image's CMD holds node's flags (README "Container image": the young generation the
        // benchmark measured, and the collection after boot); `args` replace it, `command` the
        // entrypoint (tini, which forwards SIGTERM for the drain).
        if (container.command) add(where, 'node-flags', "command replaces the image's entrypoint (tini, then node)");
        if (container.args) {
          for (const [flag, given] of NODE_FLAGS)
            if (!container.args.some((a) => given.test(a))) add(where, 'node-flags', `args replace the image's CMD without ${flag}`);
        }
        const startup = container.startupProbe;
        if (startup) {
          const budget = (startup.initialDelaySeconds ?? 0) + (startup.periodSeconds ?? 10) * (startup.failureThreshold ?? 3);
          if (budget < SECRETS_BOOT_WAIT_SECONDS + STARTUP_MARGIN_SECONDS)
            add(
              where,
              'startup-probe',
              `startupProbe gives ${budget} s; the gateway may wait ${SECRETS_BOOT_WAIT_SECONDS} s for Secret Manager before it listens (needs ≥ ${SECRETS_BOOT_WAIT_SECONDS + STARTUP_MARGIN_SECONDS} s)`,
            );
        }
      }

      checkImage(
        container.image,
        options,
        (m) => add(where, 'image-tag', m),
        (m) => add(where, 'image-registry', m),
      );

      if (!isInit) {
        for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe'] as const) {
          const p = container[probe];
          if (!p) {
            add(where, 'probes', `${probe} is missing`);
          } else if (p.httpGet?.port !== undefined && !portDeclared(container, p.httpGet.port)) {
            add(where, 'probes', `${probe} uses port ${p.httpGet.port}, which the container does not declare`);
          } else if (p.httpGet?.path !== PROBE_PATHS[probe]) {
            const what = p.httpGet ? `checks ${p.httpGet.path ?? '/'}` : 'is not an HTTP GET';
            add(where, 'probe-routes', `${probe} ${what}, not ${PROBE_PATHS[probe]} (SPEC §6)`);
          } else if (resolvePort(pod, p.httpGet.port) !== listenPort) {
            add(where, 'ports', `${probe} checks port ${p.httpGet.port}, but the gateway listens on PORT=${listenPort}`);
          }
        }
      }

      for (const kind of ['requests', 'limits'] as const) {
        for (const resource of ['cpu', 'memory']) {
          if (!container.resources?.[kind]?.[resource]) add(where, 'resources', `resources.${kind}.${resource} is not set`);
        }
      }
      if (!isInit) {
        // The memory limit must hold the RSS under load with headroom, and V8's heap ceiling (which
        // V8 derives from the limit itself) plus what lives outside the heap: otherwise the kernel
        // OOM-kills the pod (SIGKILL: no drain, no audit lines) before V8 collects harder.
        const limitText = container.resources?.limits?.memory;
        const requestText = container.resources?.requests?.memory;
        if (limitText) {
          const limit = quantityBytes(limitText);
          const needed = Math.max(LOAD_RSS_BYTES * LOAD_HEADROOM, heapCeilingBytes(limit) + OFF_HEAP_BYTES);
          if (!(limit >= needed))
            add(
              where,
              'memory',
              `memory limit ${limitText} < ${Math.ceil(needed / 2 ** 20)}Mi: RSS under load ~${LOAD_RSS_BYTES / 1e6} MB × ${LOAD_HEADROOM}, ` +
                `and V8's heap ceiling there (${Math.round(heapCeilingBytes(limit) / 2 ** 20)} MiB) + ~${OFF_HEAP_BYTES / 1e6} MB off-heap`,
            );
        }
        if (requestText && !(quantityBytes(requestText) >= IDLE_RSS_BYTES))
          add(where, 'memory', `memory request ${requestText} is below the idle RSS (~${IDLE_RSS_BYTES / 1e6} MB)`);
      }

      const sc = container.securityContext ?? {};
      const podSc = pod.securityContext ?? {};
      if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) add(where, 'non-root', 'runAsNonRoot is not true');
      if ((sc.runAsUser ?? podSc.runAsUser) === 0) add(where, 'non-root', 'runAsUser is 0 (root)');
      if (sc.readOnlyRootFilesystem !== true) add(where, 'read-only-root', 'readOnlyRootFilesystem is not true');
      if (sc.allowPrivilegeEscalation !== false) add(where, 'privilege', 'allowPrivilegeEscalation is not false');
      if (sc.privileged === true) add(where, 'privilege', 'privileged is true');
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) add(where, 'capabilities', 'capabilities.drop does not include ALL');
      if ((sc.capabilities?.add ?? []).length > 0) add(where, 'capabilities', `capabilities.add: ${sc.capabilities?.add?.join(', ')}`);
      const seccomp = sc.seccompProfile?.type ?? podSc.seccompProfile?.type;
      if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
        add(where, 'seccomp', `seccompProfile is ${seccomp ?? 'unset'}, not RuntimeDefault`);

      // A read-only root still needs a writable /tmp (Node, libraries).
      const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
      if (!tmp || !volumes.get(tmp.name)?.emptyDir) add(where, 'writable-tmp', 'no emptyDir mounted at /tmp');

      for (const ref of configMapRefs(container)) {
        if (!configMaps.has(ref)) add(where, 'config-refs', `ConfigMap ${ref} is not in the render`);
      }
      for (const ref of secretRefs(container)) {
        if (!secrets.has(ref)) add(where, 'config-refs', `Secret ${ref} is neither in the render nor the target of an ExternalSecret`);
      }

      const policyFile = env.get('API_KEY_SERVER_POLICY_FILE');
      if (policyFile !== undefined) {
        const mount = container.volumeMounts?.find((m) => policyFile.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
        const volume = mount && volumes.get(mount.name);
        if (!mount || !volume?.configMap)
          add(where, 'policy-file', `API_KEY_SERVER_POLICY_FILE=${policyFile} is not inside a mounted ConfigMap`);
        else {
          const key = policyFile.slice(mount.mountPath.replace(/\/$/, '').length + 1);
          const data = (configMaps.get(volume.configMap.name)?.data ?? {}) as Record<string, string>;
          if (!(key in data)) add(where, 'policy-file', `ConfigMap ${volume.configMap.name} has no key ${key}`);
        }
      }

      // Without a preStop the drain alone must still fit the grace period and the LB's draining.
      const sleep = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
      if (!isInit) {
        const drain = Number(env.get('API_KEY_SERVER_SHUTDOWN_DRAIN_SECONDS') ?? DEFAULT_DRAIN_SECONDS);
        const grace = pod.terminationGracePeriodSeconds ?? 30;
        if (grace < sleep + drain + SHUTDOWN_MARGIN_SECONDS) {
          add(
            where,
            'graceful-shutdown',
            `terminationGracePeriodSeconds ${grace} < preStop ${sleep} s + drain ${drain} s + ${SHUTDOWN_MARGIN_SECONDS} s`,
          );
        }
        // The load balancer drops a terminating pod from its endpoints at once and closes what is
        // still open when its own draining ends: that must outlast the pod's preStop and drain, or
        // it cuts the streams the gateway is finishing (no SSE error event, audited as aborts).
        for (const backend of objects.filter((o) => o.kind === 'BackendConfig')) {
          const draining = (backend.spec as { connectionDraining?: { drainingTimeoutSec?: number } } | undefined)?.connectionDraining
            ?.drainingTimeoutSec;
          if ((draining ?? 0) < sleep + drain)
            add(
              at(backend),
              'graceful-shutdown',
              `connectionDraining.drainingTimeoutSec ${draining ?? 0} < preStop ${sleep} s + drain ${drain} s of ${idOf(object)}`,
            );
        }
      }
    }

    for (const vol of pod.volumes ?? []) {
      if (vol.configMap && !configMaps.has(vol.configMap.name))
        add(at(object), 'config-refs', `volume ${vol.name}: ConfigMap ${vol.configMap.name} is not in the render`);
      if (vol.secret && !secrets.has(vol.secret.secretName))
        add(at(object), 'config-refs', `volume ${vol.name}: Secret ${vol.secret.secretName} is not produced`);
    }

    const sa = pod.serviceAccountName ?? 'default';
    const annotation = serviceAccounts.get(sa)?.metadata.annotations?.['iam.gke.io/gcp-service-account'];
    if (!annotation?.endsWith('.iam.gserviceaccount.com')) {
      add(at(object), 'workload-identity', `ServiceAccount ${sa} is not in the render with an iam.gke.io/gcp-service-account annotation`);
    }

    for (const [i, constraint] of (pod.topologySpreadConstraints ?? []).entries()) {
      if (!selects(constraint.labelSelector, podLabels))
        add(at(object), 'selectors', `topologySpreadConstraints[${i}] does not select the pod's labels`);
    }

    checkTraffic(objects, pod, podLabels, listening, (o, rule, m) => add(at(o), rule, m));
  }

  for (const map of configMaps.values()) {
    for (const key of Object.keys(map.data ?? {})) {
      if (SECRET_VARIABLES.includes(key)) add(at(map), 'env-hygiene', `${key} is a secret (SPEC §2); it may not be a ConfigMap value`);
    }
  }

  // The External Secrets Operator's CRDs default three fields of each remoteRef. Inside the `data`
  // list (which a merge replaces whole) Argo CD then finds the live object differing from Git for
  // ever: the Application is OutOfSync with nothing changed, and dev's self-heal re-applies it in a loop.
  for (const external of objects.filter((o) => o.kind === 'ExternalSecret')) {
    const data = (external.spec as { data?: { secretKey?: string; remoteRef?: Record<string, unknown> }[] } | undefined)?.data ?? [];
    for (const entry of data) {
      const missing = Object.keys(REMOTE_REF_DEFAULTS).filter((field) => entry.remoteRef?.[field] === undefined);
      if (missing.length)
        add(
          at(external),
          'argo-drift',
          `data ${entry.secretKey ?? '?'}: remoteRef leaves ${missing.join(', ')} to the CRD's defaults (${missing
            .map((f) => `${f}: ${REMOTE_REF_DEFAULTS[f]}`)
            .join(', ')}), which Argo CD reports as drift`,
        );
    }
  }

  checkSelectors(objects, pods, (o, m) => add(at(o), 'selectors', m));
  checkAutoscaling(objects, (o, m) => add(at(o), 'autoscaling', m));
  checkDisruption(objects, pods, (o, m) => add(at(o), 'disruption', m));

  if (options.overlay) {
    const namespaces = objects.filter((o) => o.kind === 'Namespace');
    if (namespaces.length !== 1) add(rendered.target, 'namespace', `expected one Namespace, found ${namespaces.length}`);
    const ns = namespaces[0]?.metadata.name;
    for (const o of objects) {
      if (o.kind !== 'Namespace' && o.metadata.namespace !== ns)
        add(at(o), 'namespace', `namespace is ${o.metadata.namespace ?? 'unset'}, not ${ns}`);
      for (const text of strings(o)) {
        if (PLACEHOLDERS.test(text)) add(at(o), 'placeholder', `unreplaced placeholder in "${text}"`);
      }
    }
  }
  return v;
}

function checkImage(
  image: string | undefined,
  options: RuleOptions,
  tagError: (m: string) => void,
  registryError: (m: string) => void,
): void {
  if (!image) return tagError('no image');
  const [nameAndTag, digest] = image.split('@');
  const lastSegment = nameAndTag.slice(nameAndTag.lastIndexOf('/') + 1);
  const tag = lastSegment.includes(':') ? lastSegment.slice(lastSegment.indexOf(':') + 1) : undefined;
  if (!tag && !digest) tagError(`${image} has no tag (it would mean latest)`);
  if (tag === 'latest') tagError(`${image} uses the latest tag`);
  // What the delivery workflow pushes (sha-<commit>) or a release version: a tag that names one
  // build. Artifact Registry keeps tags immutable (Terraform), so such a tag is as good as a digest.
  else if (options.overlay && tag && !digest && !/^(sha-[0-9a-f]{7,40}|v?\d+\.\d+\.\d+(-[\w.]+)?)$/.test(tag))
    tagError(`${image}: the tag ${tag} names no build (sha-<commit> or a version); pin one, or a digest`);
  if (options.overlay && !/^[a-z0-9-]+-docker\.pkg\.dev\//.test(image)) registryError(`${image} is not from Artifact Registry`);
}

/**
 * Development settings a deployed environment must not keep, and settings no pod can work with:
 * debug logging (every request's details) or a plaintext Secret Manager emulator in stage or
 * prod, a secret as a literal value, a loopback listen address (the kubelet and the load balancer
 * could not reach the pod).
 */
function checkEnvironment(env: ReadonlyMap<string, string>, options: RuleOptions, error: (m: string) => void): void {
  const deployed = options.environment === 'stage' || options.environment === 'prod';
  if (deployed && env.get('LOG_LEVEL') === 'debug') error(`LOG_LEVEL=debug in ${options.environment}: a development setting`);
  if (deployed && env.has('API_KEY_SERVER_SECRET_MANAGER_ENDPOINT'))
    error(`API_KEY_SERVER_SECRET_MANAGER_ENDPOINT (a plaintext emulator) is set in ${options.environment}`);
  for (const name of SECRET_VARIABLES) {
    if (env.has(name)) error(`${name} is a literal value in the manifests; secrets come from Secret Manager or a Secret`);
  }
  const address = env.get('API_KEY_SERVER_LISTEN_ADDRESS');
  if (address !== undefined && /^(127\.|::1$|localhost$)/.test(address))
    error(`API_KEY_SERVER_LISTEN_ADDRESS=${address}: probes and the load balancer cannot reach a loopback address`);
}

/** The number a port reference (a number, or a container port's name) resolves to in a pod. */
function resolvePort(pod: PodSpec, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  if (port === undefined) return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  for (const container of pod.containers) {
    const found = (container.ports ?? []).find((p) => p.name === port);
    if (found) return found.containerPort;
  }
  return undefined;
}

/**
 * Whatever sends traffic to the pod must reach the port it listens on and the SPEC's routes: the
 * Services that select it, the load balancer's health check (BackendConfig), the managed
 * Prometheus scrape (PodMonitoring), and the NetworkPolicies around it, which must also let in the
 * load balancer and the scraper and no one else, and let out DNS, the metadata server (Workload
 * Identity) and HTTPS.
 */
function checkTraffic(
  objects: readonly K8sObject[],
  pod: PodSpec,
  labels: Record<string, string>,
  listening: ReadonlySet<number>,
  error: (o: K8sObject, rule: string, m: string) => void,
): void {
  const listen = [...listening].join(', ');
  const backendConfigs = new Map(objects.filter((o) => o.kind === 'BackendConfig').map((o) => [o.metadata.name, o]));
  let behindLoadBalancer = false;
  for (const service of objects.filter((o) => o.kind === 'Service')) {
    const spec = service.spec as { selector?: Record<string, string>; ports?: { port: number; targetPort?: number | string }[] };
    if (!selects({ matchLabels: spec.selector }, labels)) continue;
    for (const port of spec.ports ?? []) {
      const target = resolvePort(pod, port.targetPort ?? port.port);
      if (target === undefined || !listening.has(target))
        error(service, 'ports', `port ${port.port} targets ${port.targetPort ?? port.port}, not the listen port ${listen}`);
    }
    const annotations = service.metadata.annotations ?? {};
    const neg = annotations['cloud.google.com/neg'];
    if (neg !== undefined && (JSON.parse(neg) as { ingress?: boolean }).ingress === true) behindLoadBalancer = true;
    const raw = annotations['cloud.google.com/backend-config'];
    if (raw === undefined) continue;
    const ref = JSON.parse(raw) as { default?: string; ports?: Record<string, string> };
    for (const name of [ref.default, ...Object.values(ref.ports ?? {})].filter((n): n is string => typeof n === 'string')) {
      const backend = backendConfigs.get(name);
      if (!backend) {
        error(service, 'config-refs', `BackendConfig ${name} is not in the render`);
        continue;
      }
      const check = (backend.spec as { healthCheck?: { requestPath?: string; port?: number } }).healthCheck;
      if (check?.requestPath !== READINESS_PATH)
        error(backend, 'probe-routes', `healthCheck.requestPath is ${check?.requestPath ?? 'unset (/)'}, not ${READINESS_PATH}`);
      if (check?.port !== undefined && !listening.has(check.port))
        error(backend, 'ports', `healthCheck.port ${check.port} is not the listen port ${listen}`);
    }
  }

  const scrapePorts = new Set<number>();
  for (const monitor of objects.filter((o) => o.kind === 'PodMonitoring')) {
    const spec = monitor.spec as { selector?: LabelSelector; endpoints?: { port?: number | string; path?: string }[] };
    if (!selects(spec.selector, labels)) continue;
    for (const endpoint of spec.endpoints ?? []) {
      const port = resolvePort(pod, endpoint.port);
      if (port === undefined || !listening.has(port))
        error(monitor, 'metrics-scrape', `scrapes port ${endpoint.port ?? 'unset'}, not the listen port ${listen}`);
      else scrapePorts.add(port);
      if ((endpoint.path ?? METRICS_PATH) !== METRICS_PATH)
        error(monitor, 'metrics-scrape', `scrapes ${endpoint.path}, not ${METRICS_PATH} (SPEC §6)`);
    }
  }

  for (const policy of objects.filter((o) => o.kind === 'NetworkPolicy')) {
    const spec = policy.spec as { podSelector?: LabelSelector; policyTypes?: string[]; ingress?: PolicyRule[]; egress?: PolicyRule[] };
    if (!selects(spec.podSelector, labels)) continue;
    // A rule without peers admits every peer, one without ports every port.
    const allows = (rules: PolicyRule[] | undefined, peer: (p: PolicyPeer) => boolean, port: number, protocol = 'TCP'): boolean =>
      (rules ?? []).some((r) => {
        const peers = r.from ?? r.to ?? [];
        return (
          (peers.length === 0 || peers.some(peer)) &&
          (!r.ports?.length || r.ports.some((p) => (p.protocol ?? 'TCP') === protocol && resolvePort(pod, p.port) === port))
        );
      });
    if ((spec.policyTypes ?? ['Ingress']).includes('Ingress')) {
      for (const [i, rule] of (spec.ingress ?? []).entries()) {
        if (!rule.from?.length) error(policy, 'network-policy', `ingress[${i}] admits every source`);
      }
      for (const port of listening) {
        if (behindLoadBalancer) {
          for (const cidr of GOOGLE_FRONT_END_RANGES) {
            if (!allows(spec.ingress, (p) => p.ipBlock?.cidr === cidr, port))
              error(policy, 'network-policy', `the load balancer (${cidr}) cannot reach port ${port}`);
          }
        }
        if (scrapePorts.has(port) && !allows(spec.ingress, (p) => namespaceSelects(p, MANAGED_PROMETHEUS_NAMESPACE), port))
          error(policy, 'network-policy', `the managed Prometheus collectors (${MANAGED_PROMETHEUS_NAMESPACE}) cannot scrape port ${port}`);
      }
    }
    if ((spec.policyTypes ?? []).includes('Egress')) {
      if (!allows(spec.egress, () => true, 53, 'UDP')) error(policy, 'network-policy', 'egress does not allow DNS (53/UDP)');
      if (!allows(spec.egress, (p) => p.ipBlock?.cidr === '169.254.169.254/32', 80))
        error(
          policy,
          'network-policy',
          'egress does not allow the metadata server (169.254.169.254:80), so Workload Identity has no token',
        );
      if (!allows(spec.egress, (p) => p.ipBlock?.cidr === '0.0.0.0/0', 443))
        error(policy, 'network-policy', 'egress does not allow HTTPS (443) to the providers and Google APIs');
    }
  }
}

/** Whether a NetworkPolicy peer's namespaceSelector selects the namespace of that name. */
function namespaceSelects(peer: PolicyPeer, namespace: string): boolean {
  const selector = peer.namespaceSelector;
  if (!selector || peer.podSelector) return false;
  const key = 'kubernetes.io/metadata.name';
  const labelsMatch = Object.entries(selector.matchLabels ?? {}).every(([k, val]) => k === key && val === namespace);
  const expressionsMatch = (selector.matchExpressions ?? []).every(
    (e) => e.key === key && e.operator === 'In' && (e.values ?? []).includes(namespace),
  );
  return labelsMatch && expressionsMatch;
}

function portDeclared(container: Container, port: number | string): boolean {
  return (container.ports ?? []).some((p) => p.name === port || p.containerPort === port);
}

function configMapRefs(container: Container): string[] {
  return [
    ...(container.envFrom ?? []).flatMap((e) => (e.configMapRef ? [e.configMapRef.name] : [])),
    ...(container.env ?? []).flatMap((e) => (e.valueFrom?.configMapKeyRef ? [e.valueFrom.configMapKeyRef.name] : [])),
  ];
}

function secretRefs(container: Container): string[] {
  return [
    ...(container.envFrom ?? []).flatMap((e) => (e.secretRef ? [e.secretRef.name] : [])),
    ...(container.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name] : [])),
  ];
}

/**
 * The literal environment of a container: ConfigMap `envFrom` entries, overridden by `env` values
 * (as Kubernetes does). Values from Secrets are left out.
 */
export function effectiveEnv(container: Container, configMaps: ReadonlyMap<string, K8sObject>): Map<string, string> {
  const env = new Map<string, string>();
  for (const from of container.envFrom ?? []) {
    const data = from.configMapRef ? ((configMaps.get(from.configMapRef.name)?.data ?? {}) as Record<string, string>) : {};
    for (const [k, val] of Object.entries(data)) env.set(k, val);
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env.set(e.name, e.value);
    else env.delete(e.name);
  }
  return env;
}

function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  const match = selector?.matchLabels ?? {};
  return Object.keys(match).length > 0 && Object.entries(match).every(([k, val]) => labels[k] === val);
}

function checkSelectors(objects: readonly K8sObject[], pods: readonly Workload[], error: (o: K8sObject, m: string) => void): void {
  const anyPod = (selector: LabelSelector | undefined): boolean => pods.some((p) => selects(selector, p.template.metadata?.labels ?? {}));
  for (const o of objects) {
    const spec = (o.spec ?? {}) as { selector?: LabelSelector; podSelector?: LabelSelector };
    switch (o.kind) {
      case 'Service':
        // A Service's selector is the label map itself.
        if (!anyPod({ matchLabels: (o.spec as { selector?: Record<string, string> }).selector }))
          error(o, 'selector matches no pod template');
        break;
      case 'PodDisruptionBudget':
      case 'PodMonitoring':
        if (!anyPod(spec.selector)) error(o, 'selector matches no pod template');
        break;
      case 'NetworkPolicy':
        if (!anyPod(spec.podSelector)) error(o, 'podSelector matches no pod template');
        break;
      case 'Deployment': {
        const template = (o.spec as { template?: PodTemplate }).template;
        if (!selects(spec.selector, template?.metadata?.labels ?? {})) error(o, 'selector does not match its own pod template');
        break;
      }
      default:
        break;
    }
  }
}

function checkAutoscaling(objects: readonly K8sObject[], error: (o: K8sObject, m: string) => void): void {
  for (const hpa of objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
    const spec = hpa.spec as { scaleTargetRef: { kind: string; name: string }; minReplicas?: number; maxReplicas: number };
    const target = objects.find((o) => o.kind === spec.scaleTargetRef.kind && o.metadata.name === spec.scaleTargetRef.name);
    if (!target) error(hpa, `scaleTargetRef ${spec.scaleTargetRef.kind}/${spec.scaleTargetRef.name} is not in the render`);
    else if ((target.spec as { replicas?: number }).replicas !== undefined)
      error(target, 'sets spec.replicas although an HPA scales it (Argo CD would fight the HPA)');
    if ((spec.minReplicas ?? 1) > spec.maxReplicas) error(hpa, `minReplicas ${spec.minReplicas} > maxReplicas ${spec.maxReplicas}`);
  }
}

/**
 * A PodDisruptionBudget must leave room for one eviction at the workload's smallest size (the
 * HPA's minReplicas, else its replicas): otherwise a node drain (upgrades, autoscaler) waits on it
 * forever.
 */
function checkDisruption(objects: readonly K8sObject[], pods: readonly Workload[], error: (o: K8sObject, m: string) => void): void {
  const smallest = (workload: K8sObject): number => {
    const hpa = objects.find((o) => {
      const ref = (o.spec as { scaleTargetRef?: { kind: string; name: string } } | undefined)?.scaleTargetRef;
      return o.kind === 'HorizontalPodAutoscaler' && ref?.kind === workload.kind && ref.name === workload.metadata.name;
    });
    if (hpa) return (hpa.spec as { minReplicas?: number }).minReplicas ?? 1;
    return (workload.spec as { replicas?: number }).replicas ?? 1;
  };
  const count = (value: number | string, of: number, round: (n: number) => number): number =>
    typeof value === 'number' ? value : round((of * Number(value.replace('%', ''))) / 100);
  for (const pdb of objects.filter((o) => o.kind === 'PodDisruptionBudget')) {
    const spec = pdb.spec as { selector?: LabelSelector; maxUnavailable?: number | string; minAvailable?: number | string };
    for (const { object } of pods.filter((p) => selects(spec.selector, p.template.metadata?.labels ?? {}))) {
      const replicas = smallest(object);
      // Kubernetes rounds a percentage up, for both fields.
      const evictable =
        spec.maxUnavailable !== undefined
          ? count(spec.maxUnavailable, replicas, Math.ceil)
          : replicas - count(spec.minAvailable ?? 0, replicas, Math.ceil);
      if (evictable < 1) error(pdb, `${idOf(object)} at ${replicas} replica(s) allows no eviction: a node drain would wait on it forever`);
    }
  }
}

function* strings(value: unknown): Generator<string> {
  if (typeof value === 'string') yield value;
  else if (Array.isArray(value)) for (const item of value) yield* strings(item);
  else if (value && typeof value === 'object') for (const item of Object.values(value)) yield* strings(item);
}

/** Environments Argo CD must deploy, and whether each syncs by itself. */
const ENVIRONMENTS: Readonly<Record<string, { automated: boolean }>> = {
  dev: { automated: true },
  stage: { automated: false },
  prod: { automated: false },
};

interface AppTemplate {
  metadata?: { name?: string };
  spec?: {
    project?: string;
    source?: { path?: string };
    destination?: { namespace?: string };
    syncPolicy?: { automated?: { prune?: boolean; selfHeal?: boolean } };
  };
}
interface ListGenerator {
  list?: { elements?: Record<string, string>[]; template?: AppTemplate };
}

/** The Application an ApplicationSet generates for one list element (fasttemplate `{{key}}`). */
function expand(template: AppTemplate, generatorTemplate: AppTemplate | undefined, element: Record<string, string>): AppTemplate {
  const merged: AppTemplate = {
    metadata: { ...template.metadata, ...generatorTemplate?.metadata },
    spec: { ...template.spec, ...generatorTemplate?.spec, syncPolicy: generatorTemplate?.spec?.syncPolicy ?? template.spec?.syncPolicy },
  };
  const text = JSON.stringify(merged).replace(/\{\{\s*(\w+)\s*\}\}/g, (_, key: string) => element[key] ?? `{{${key}}}`);
  return JSON.parse(text) as AppTemplate;
}

/**
 * Argo CD rules: the ApplicationSet yields exactly dev, stage and prod, from their overlays, each
 * into its own AppProject; dev syncs automatically with prune and self-heal, stage and prod never
 * automatically; every AppProject is confined to one namespace and named repositories.
 * `pathExists` tells whether a repository path exists.
 */
export function checkArgoRules(objects: readonly K8sObject[], where: string, pathExists: (path: string) => boolean): Violation[] {
  const v: Violation[] = [];
  const add = (o: K8sObject | string, rule: string, message: string): void => {
    v.push({ where: typeof o === 'string' ? o : `${idOf(o)} in ${where}`, rule, message });
  };
  const projects = new Map(objects.filter((o) => o.kind === 'AppProject').map((o) => [o.metadata.name, o]));
  for (const project of projects.values()) {
    const spec = project.spec as { sourceRepos?: string[]; destinations?: { namespace?: string; server?: string; name?: string }[] };
    if ((spec.sourceRepos ?? []).some((r) => r.includes('*')) || (spec.sourceRepos ?? []).length === 0)
      add(project, 'argo-project', 'sourceRepos must name repositories, without wildcards');
    const destinations = spec.destinations ?? [];
    if (destinations.length !== 1) add(project, 'argo-project', `expected one destination, found ${destinations.length}`);
    for (const d of destinations) {
      if (!d.namespace || d.namespace.includes('*'))
        add(project, 'argo-project', `destination namespace "${d.namespace ?? ''}" is not one namespace`);
      if ((d.server ?? d.name ?? '*').includes('*')) add(project, 'argo-project', 'destination cluster is a wildcard');
    }
  }

  const generated = new Map<string, AppTemplate>();
  for (const set of objects.filter((o) => o.kind === 'ApplicationSet')) {
    const spec = set.spec as { generators: ListGenerator[]; template: AppTemplate };
    for (const generator of spec.generators) {
      if (!generator.list) {
        add(set, 'argo-appset', 'only list generators are expected');
        continue;
      }
      for (const element of generator.list.elements ?? []) {
        generated.set(element.env ?? '?', expand(spec.template, generator.list.template, element));
      }
    }
  }
  const names = [...generated.keys()].sort();
  if (names.join(',') !== Object.keys(ENVIRONMENTS).sort().join(','))
    add(where, 'argo-appset', `generates ${names.join(', ') || 'nothing'}, expected dev, prod, stage`);

  for (const [env, app] of generated) {
    const expected = ENVIRONMENTS[env];
    if (!expected) continue;
    const label = `Application keygate-${env} (generated) in ${where}`;
    const automated = app.spec?.syncPolicy?.automated;
    if (expected.automated && (automated?.prune !== true || automated.selfHeal !== true))
      add(label, 'argo-sync', 'must sync automatically with prune and selfHeal');
    if (!expected.automated && automated) add(label, 'argo-sync', 'must not sync automatically (manual sync)');
    const project = app.spec?.project;
    if (!project || !projects.has(project)) add(label, 'argo-project', `project ${project ?? 'unset'} is not an AppProject here`);
    else {
      const allowed = (projects.get(project)?.spec as { destinations?: { namespace?: string }[] }).destinations?.map((d) => d.namespace);
      if (!allowed?.includes(app.spec?.destination?.namespace))
        add(label, 'argo-project', `namespace ${app.spec?.destination?.namespace} is not allowed by ${project}`);
    }
    const path = app.spec?.source?.path;
    if (path !== `k8s/overlays/${env}` || !pathExists(path))
      add(label, 'argo-source', `source path ${path ?? 'unset'} is not k8s/overlays/${env}`);
  }
  return v;
}

/**
 * An AppProject must admit every kind its Application renders, or the sync fails on the first
 * object it does not: cluster-scoped kinds (Namespace) by clusterResourceWhitelist, the rest by
 * namespaceResourceWhitelist (`*` as group or kind admits all).
 */
export function checkArgoProjectAdmits(project: K8sObject, rendered: Rendered): Violation[] {
  type Entry = { group: string; kind: string };
  const spec = project.spec as { clusterResourceWhitelist?: Entry[]; namespaceResourceWhitelist?: Entry[] };
  const admits = (list: Entry[] | undefined, group: string, kind: string): boolean =>
    (list ?? []).some((e) => (e.group === '*' || e.group === group) && (e.kind === '*' || e.kind === kind));
  const v: Violation[] = [];
  const seen = new Set<string>();
  for (const o of rendered.objects) {
    const group = o.apiVersion.includes('/') ? o.apiVersion.slice(0, o.apiVersion.indexOf('/')) : '';
    const key = `${group}/${o.kind}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const clusterScoped = o.metadata.namespace === undefined;
    const list = clusterScoped ? spec.clusterResourceWhitelist : spec.namespaceResourceWhitelist;
    if (!admits(list, group, o.kind))
      v.push({
        where: `${idOf(project)} for ${rendered.target}`,
        rule: 'argo-project',
        message: `${o.kind} (group "${group}") is not in its ${clusterScoped ? 'cluster' : 'namespace'}ResourceWhitelist`,
      });
  }
  return v;
}
