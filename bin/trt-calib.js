#!/usr/bin/env node
// The exit-code boundary only: run the CLI, map errors to exit codes (see src/cli/main.ts).
import os from 'node:os';

// Image decoding (sharp) and the statistics kernels run on libuv's pool; its default of 4 threads would cap
// them on larger machines. Set before anything touches the pool, hence the dynamic import below.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, os.availableParallelism()));

// Ctrl-C, kill and a closed terminal (SIGHUP) end the run through process.exit (128 + the signal's number), so
// that 'exit' handlers remove temporary files and release locks (src/util/cleanup.ts); outputs are written
// atomically, so none is left half-written.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.once(signal, () => {
    process.stderr.write(`trt-calib: interrupted (${signal})\n`);
    process.exit(code);
  });
}

const { main } = await import('../dist/cli/main.js');
main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // main() already maps every error; reaching here is a bug in the mapping itself.
    console.error(err);
    process.exitCode = 3;
  },
);
