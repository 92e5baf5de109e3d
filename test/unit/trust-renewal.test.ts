import { suite } from "uvu";
import * as assert from "uvu/assert";
import { IssuerUnavailableError, RenewalScheduler, RootCa, TrustOptionsError, type IntermediateCa, type IssuedLeaf } from "../../trust/index.ts";
import { FakeClock } from "../support/tls-fixtures.ts";

const START = new Date("2030-03-01T00:00:00Z");
const HOUR = 3_600_000;
const MIN = 60_000;

interface Ctx {
  clock: FakeClock;
  inter: IntermediateCa;
  /** How the fake issuer behaves: throws while `down` returns true. */
  down: (now: Date) => boolean;
  calls: Date[];
  issue: () => Promise<IssuedLeaf>;
}

const renew = suite("RenewalScheduler", {} as Ctx);

renew.before.each(async (ctx) => {
  ctx.clock = new FakeClock(START);
  const root = await RootCa.create({ trustDomain: "example.org", clock: ctx.clock });
  ctx.inter = await root.issueIntermediate({ cluster: "a" });
  ctx.down = () => false;
  ctx.calls = [];
  ctx.issue = () =>
    ctx.clock.track(
      (async () => {
        const now = ctx.clock.now();
        ctx.calls.push(now);
        if (ctx.down(now)) throw new IssuerUnavailableError("issuer unreachable");
        return ctx.inter.issueLeaf();
      })(),
    );
});

/** Lifetime fraction at which `leaf` was replaced, given the instant of replacement. */
const fractionAt = (leaf: IssuedLeaf, at: Date) =>
  (at.getTime() - leaf.certificate.notBefore.getTime()) / (leaf.certificate.notAfter.getTime() - leaf.certificate.notBefore.getTime());

renew("issues at once when started empty, then renews inside the default 0.5–0.8 window of each lifetime", async (ctx) => {
  const renewed: { leaf: IssuedLeaf; at: Date }[] = [];
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const s = new RenewalScheduler({ issue: ctx.issue, clock: ctx.clock, random, onRenewed: (leaf) => renewed.push({ leaf, at: ctx.clock.now() }) });
  s.start();
  await ctx.clock.advance(0);
  assert.is(renewed.length, 1);
  await ctx.clock.advance(5 * 24 * HOUR);
  assert.ok(renewed.length >= 6, `renewed ${renewed.length} times in 5 days`);
  for (let i = 1; i < renewed.length; i++) {
    const f = fractionAt(renewed[i - 1]!.leaf, renewed[i]!.at);
    assert.ok(f >= 0.5 && f <= 0.8, `renewal ${i} at fraction ${f.toFixed(3)}`);
  }
  const fractions = renewed.slice(1).map((r, i) => fractionAt(renewed[i]!.leaf, r.at));
  assert.ok(new Set(fractions.map((f) => f.toFixed(3))).size > 1, "jittered, not a fixed fraction");
  s.stop();
});

renew("renews at a configured fixed fraction", async (ctx) => {
  const first = await ctx.inter.issueLeaf();
  let renewedAt: Date | undefined;
  const s = new RenewalScheduler({ issue: ctx.issue, clock: ctx.clock, renewAt: 0.25, onRenewed: () => (renewedAt ??= ctx.clock.now()) });
  s.start(first);
  assert.is(s.nextAttemptAt?.getTime(), s.renewalTime(first).getTime());
  await ctx.clock.advance(12 * HOUR);
  assert.ok(renewedAt);
  assert.ok(Math.abs(fractionAt(first, renewedAt) - 0.25) < 1e-6);
  s.stop();
});

renew("retries with backoff when the issuer fails a few times, and renews well before expiry", async (ctx) => {
  const first = await ctx.inter.issueLeaf();
  let failures = 0;
  ctx.down = () => failures++ < 4;
  const errors: number[] = [];
  const renewed: IssuedLeaf[] = [];
  const s = new RenewalScheduler({
    issue: ctx.issue,
    clock: ctx.clock,
    renewAt: 0.5,
    retry: { initialMs: MIN, maxMs: 30 * MIN, jitter: 0 },
    onError: (_err, retryIn) => errors.push(retryIn),
    onRenewed: (leaf) => renewed.push(leaf),
  });
  s.start(first);
  await ctx.clock.advance(first.certificate.notAfter.getTime() - START.getTime() - MIN);
  assert.equal(errors, [MIN, 2 * MIN, 4 * MIN, 8 * MIN], "exponential backoff between failures");
  assert.ok(renewed.length >= 1);
  const successAt = ctx.calls[4]!;
  assert.ok(successAt < first.certificate.notAfter);
  assert.is(successAt.getTime() - s.renewalTime(first).getTime() <= 15 * MIN + 1, true);
  assert.ok(s.current!.certificate.notAfter > first.certificate.notAfter);
  s.stop();
});

renew("never lets the certificate expire while the issuer is reachable: an outage until minutes before expiry still ends in a renewal", async (ctx) => {
  const first = await ctx.inter.issueLeaf();
  const expiry = first.certificate.notAfter.getTime();
  // Unreachable from start until 3 minutes before expiry; backoff would otherwise wait 2 h between tries.
  ctx.down = (now) => now.getTime() < expiry - 3 * MIN;
  const s = new RenewalScheduler({ issue: ctx.issue, clock: ctx.clock, renewAt: 0.6, retry: { initialMs: 2 * HOUR, maxMs: 2 * HOUR, jitter: 0 }, minRetryMs: 30_000 });
  s.start(first);
  await ctx.clock.advance(expiry - START.getTime() - 1);
  assert.is.not(s.current, first, "renewed before expiry");
  const success = ctx.calls[ctx.calls.length - 1]!;
  assert.ok(success.getTime() >= expiry - 3 * MIN && success.getTime() < expiry);
  const gaps = ctx.calls.slice(1).map((c, i) => c.getTime() - ctx.calls[i]!.getTime());
  assert.ok(gaps.every((g, i) => i === 0 || g <= gaps[i - 1]! || g === 30_000), "retries tighten as expiry nears");
  s.stop();
});

renew("stop() cancels the pending renewal", async (ctx) => {
  const first = await ctx.inter.issueLeaf();
  const s = new RenewalScheduler({ issue: ctx.issue, clock: ctx.clock });
  s.start(first);
  assert.is(ctx.clock.pendingTimers, 1);
  s.stop();
  assert.is(ctx.clock.pendingTimers, 0);
  await ctx.clock.advance(48 * HOUR);
  assert.is(ctx.calls.length, 0);
});

renew("validates its options, reporting every problem", (ctx) => {
  try {
    new RenewalScheduler({ issue: ctx.issue, clock: { now: () => new Date() } as unknown as FakeClock, renewAt: { min: 0.9, max: 0.2 }, minRetryMs: 0 });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, TrustOptionsError);
    assert.equal((err as TrustOptionsError).problems.map((p) => p.path), ["clock", "renewAt", "minRetryMs"]);
  }
});

renew.run();
