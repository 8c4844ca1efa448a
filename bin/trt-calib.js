#!/usr/bin/env node
// The exit-code boundary only: run the CLI, map errors to exit codes (see src/cli/main.ts).
import { main } from '../dist/cli/main.js';

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
