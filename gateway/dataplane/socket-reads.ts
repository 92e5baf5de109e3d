/** As large as the reads Node itself makes on a TCP socket. */
export const SHARED_READ_BUFFER_BYTES = 64 * 1024;

/**
 * One buffer that several plain sockets read into (net's `onread`), each read
 * copied out before the next can happen. Node otherwise allocates 64 KiB per
 * read, shrinks it to the bytes read and pushes it through the socket's
 * Readable state; on a tunnel stream's upstream socket, where every request's
 * response is one read, that was about 1 µs per read (BENCHMARKS.md, "L4 pair:
 * CPU per request and p99 over rounds"). Reads run one at a time on the event
 * loop, so one buffer (per export listener) serves every socket reading into it.
 */
export class SharedReadBuffer {
  readonly buffer = Buffer.allocUnsafeSlow(SHARED_READ_BUFFER_BYTES);

  /** The reads of one socket, for its `onread` option. */
  reader(): SocketReader {
    return new SocketReader(this.buffer);
  }
}

/** Where one socket's reads go; hand `onread` to net.connect, then `attach` whoever relays the socket. */
export class SocketReader {
  readonly onread: { buffer: Buffer; callback: (bytes: number, buffer: Buffer) => boolean };
  private sink: ((chunk: Buffer) => boolean) | undefined;
  /** Reads before `attach` (a backend that speaks first), copied. */
  private early: Buffer[] = [];

  constructor(buffer: Buffer) {
    this.onread = { buffer, callback: (bytes, buf) => this.onRead(buf.subarray(0, bytes)) };
  }

  /**
   * From now on each read goes to `sink`, which must copy what it keeps (the
   * memory is reused by the next read) and returns false to pause the socket
   * (`socket.resume()` reads on). Returns false if a read kept from before
   * was refused, i.e. the caller should pause the socket.
   */
  attach(sink: (chunk: Buffer) => boolean): boolean {
    this.sink = sink;
    const early = this.early;
    this.early = [];
    let flowing = true;
    for (const chunk of early) flowing = sink(chunk) && flowing;
    return flowing;
  }

  private onRead(chunk: Buffer): boolean {
    if (this.sink) return this.sink(chunk);
    this.early.push(Buffer.from(chunk));
    return true;
  }
}
