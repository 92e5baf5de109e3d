import * as k8s from "@kubernetes/client-node";
import { Backoff, asError, silentLogger, type Logger } from "../../common/index.ts";

export interface ResilientInformerOptions<T extends k8s.KubernetesObject> {
  kubeConfig: k8s.KubeConfig;
  /** The watch path, e.g. `/api/v1/services`. */
  path: string;
  list: () => Promise<k8s.KubernetesListObject<T>>;
  labelSelector?: string;
  /** Called with every added, updated or deleted object; handlers should only enqueue a key. */
  onEvent: (obj: T) => void;
  logger?: Logger;
}

const LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration";

/**
 * What the cache keeps of an object, like client-go's informer transform:
 * no reconciler reads managedFields or kubectl's last-applied copy, and
 * together they are often most of an object's size. Mutates and returns the
 * object, which was just decoded and is not shared yet.
 */
export function trimForCache<T extends k8s.KubernetesObject>(obj: T): T {
  const metadata = obj.metadata;
  if (!metadata) return obj;
  delete metadata.managedFields;
  if (metadata.annotations && LAST_APPLIED_ANNOTATION in metadata.annotations) {
    delete metadata.annotations[LAST_APPLIED_ANNOTATION];
    if (Object.keys(metadata.annotations).length === 0) delete metadata.annotations;
  }
  return obj;
}

/** A Watch whose objects are trimmed before ListWatch stores them. */
class TrimmingWatch extends k8s.Watch {
  override watch(...[path, queryParams, callback, done]: Parameters<k8s.Watch["watch"]>): Promise<AbortController> {
    return super.watch(path, queryParams, (phase: string, obj: k8s.KubernetesObject, watchObj?: unknown) => callback(phase, trimForCache(obj), watchObj), done);
  }
}

/**
 * client-node's ListWatch, which relists on 410 but stops for good on any
 * other error, wrapped to restart with jittered backoff. Objects removed while
 * it was down are reported as deletes on the relist.
 */
export class ResilientInformer<T extends k8s.KubernetesObject> {
  private readonly options: ResilientInformerOptions<T>;
  private readonly informer: k8s.ListWatch<T>;
  private readonly backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
  private readonly log: Logger;
  private synced = false;
  private starting = false;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private lists = 0;
  private restarts = 0;

  constructor(options: ResilientInformerOptions<T>) {
    this.options = options;
    this.log = (options.logger ?? silentLogger).child({ informer: options.path });
    const list = async () => {
      this.lists++;
      const result = await options.list();
      result.items.forEach(trimForCache);
      return result;
    };
    this.informer = new k8s.ListWatch(options.path, new TrimmingWatch(options.kubeConfig), list, false, options.labelSelector);
    for (const verb of [k8s.ADD, k8s.UPDATE, k8s.DELETE] as const) this.informer.on(verb, (obj: T) => options.onEvent(obj));
    this.informer.on(k8s.ERROR, (err: unknown) => this.restart(err));
    this.informer.on(k8s.CONNECT, () => this.backoff.reset());
  }

  /** Lists, starts watching, and resolves once the cache holds a full list. Retries until it does. */
  async start(): Promise<void> {
    this.starting = true;
    try {
      for (;;) {
        // ListWatch.start() does not throw when its list fails: it reports an error and returns without a resourceVersion.
        await this.informer.start();
        if (this.stopped || this.informer.latestResourceVersion() !== "") break;
        const delay = this.backoff.next();
        this.log.warn("initial list failed; retrying", { retryInMs: delay });
        await new Promise((r) => setTimeout(r, delay));
      }
      this.synced = !this.stopped;
    } finally {
      this.starting = false;
    }
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Full lists (the first, and every relist after a 410) and restarts after a failed watch. */
  stats(): { path: string; lists: number; restarts: number } {
    return { path: this.options.path, lists: this.lists, restarts: this.restarts };
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.informer.stop();
  }

  private restart(err: unknown): void {
    // While start() still loops for its first list, it does the retrying.
    if (this.stopped || this.starting || this.restartTimer) return;
    this.restarts++;
    const delay = this.backoff.next();
    this.log.warn("watch failed; restarting", { err: asError(err), retryInMs: delay });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.informer.start().catch((e: unknown) => this.restart(e));
    }, delay);
  }
}
