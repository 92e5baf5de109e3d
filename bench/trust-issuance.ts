/**
 * Trust benchmark: leaf issuance and chain verification against the raw
 * ECDSA P-256 sign rate, all on one core, sequentially (each operation awaited
 * before the next starts).
 *
 *   node --import tsx bench/trust-issuance.ts [--ms 2000]
 *
 * Prints a markdown table. The raw sign rate is measured before and after the
 * issuance runs, with the same WebCrypto call the CA makes
 * (`crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, ...)`), and issuance
 * is reported as a ratio of their mean, so background load shows up in both.
 */
import { webcrypto } from "node:crypto";
import { availableParallelism } from "node:os";
import { RootCa, TrustBundle, createCsr, verifyPeer, type IntermediateCa } from "../trust/index.ts";

const msArg = process.argv.indexOf("--ms");
const WINDOW_MS = msArg > 0 ? Number(process.argv[msArg + 1]) : 2_000;
const TBS_SIZE_BYTES = 420; // about the size of a leaf's to-be-signed part
const CSR_POOL = 32;
const CHAIN_POOL = 64;

interface Rate {
  ops: number;
  seconds: number;
  perSecond: number;
}

async function measure(fn: (i: number) => unknown, windowMs = WINDOW_MS): Promise<Rate> {
  for (let i = 0; i < 50; i++) await fn(i); // warm-up (JIT, caches)
  const start = performance.now();
  let ops = 0;
  while (performance.now() - start < windowMs) {
    await fn(ops);
    ops++;
  }
  const seconds = (performance.now() - start) / 1000;
  return { ops, seconds, perSecond: ops / seconds };
}

async function rawSignRate(): Promise<Rate> {
  const keys = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  const tbs = webcrypto.getRandomValues(new Uint8Array(TBS_SIZE_BYTES));
  return measure(() => webcrypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, tbs));
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const pct = (n: number) => `${(n * 100).toFixed(1)} %`;

async function main(): Promise<void> {
  const root = await RootCa.create({ trustDomain: "bench.example" });
  const inter: IntermediateCa = await root.issueIntermediate({ cluster: "a" });
  const bundle = TrustBundle.create({ trustDomain: "bench.example", certificates: [root.certificate], sequence: 1 });
  const csrs = await Promise.all(Array.from({ length: CSR_POOL }, (_, i) => createCsr({ spiffeId: `spiffe://bench.example/cluster/a/ns/bench/sa/w${i}` })));
  const chains = await Promise.all(Array.from({ length: CHAIN_POOL }, async () => (await inter.issueLeaf()).chain.map((c) => c.der)));

  const signBefore = await rawSignRate();
  const fromCsr = await measure((i) => inter.issueLeaf({ spiffeId: `spiffe://bench.example/cluster/a/ns/bench/sa/w${i % CSR_POOL}`, csr: csrs[i % CSR_POOL]!.csrPem }));
  const generated = await measure(() => inter.issueLeaf());
  const verifyWarm = await measure((i) => verifyPeer(chains[i % CHAIN_POOL]!, bundle));
  // Cold: a fresh bundle object per call, so the intermediate is parsed and its signature checked every time.
  const verifyCold = await measure((i) => verifyPeer(chains[i % CHAIN_POOL]!, TrustBundle.create({ trustDomain: "bench.example", certificates: [root.certificate], sequence: 1 })));
  const signAfter = await rawSignRate();
  const sign = (signBefore.perSecond + signAfter.perSecond) / 2;

  const rows: [string, string, string][] = [
    ["raw ECDSA P-256 sign (WebCrypto), before", `${fmt(signBefore.perSecond)} /s`, "—"],
    ["raw ECDSA P-256 sign (WebCrypto), after", `${fmt(signAfter.perSecond)} /s`, "—"],
    ["leaf issued from a CSR (parse + verify CSR + sign)", `${fmt(fromCsr.perSecond)} /s`, pct(fromCsr.perSecond / sign)],
    ["leaf issued with a generated key (keygen + PKCS#8 export + sign)", `${fmt(generated.perSecond)} /s`, pct(generated.perSecond / sign)],
    ["verifyPeer, leaf + intermediate (intermediate cached per bundle)", `${fmt(verifyWarm.perSecond)} /s`, "—"],
    ["verifyPeer, leaf + intermediate (cold: 2 signature checks)", `${fmt(verifyCold.perSecond)} /s`, "—"],
  ];
  const out = [
    `Trust benchmark: Node ${process.version}, ${availableParallelism()} cores, one sequential loop, ${WINDOW_MS} ms per row.`,
    "",
    "| operation | rate | of raw sign rate |",
    "|---|---:|---:|",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
    `Issuance target: >= 25 % of the raw sign rate (mean ${fmt(sign)} /s).`,
  ];
  process.stdout.write(out.join("\n") + "\n");
}

await main();
