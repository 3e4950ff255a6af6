// Runs edge/mcu's selftest under real MicroPython (the official WebAssembly port) in Node.js.
// usage: node run_micropython.mjs REPO_ROOT PACKAGE_DIR [PYTHON_SNIPPET]
// PACKAGE_DIR is the installed @micropython/micropython-webassembly-pyscript (see the Makefile).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [repo, pkg, snippet] = process.argv.slice(2);
const { loadMicroPython } = await import(pathToFileURL(join(pkg, "micropython.mjs")).href);
const lines = [];
const mp = await loadMicroPython({ stdout: (s) => lines.push(s), stderr: (s) => lines.push(s) });
mp.FS.mkdir("/lib");
mp.FS.mkdir("/lib/edge");
mp.FS.mkdir("/lib/edge/mcu");
mp.FS.writeFile("/lib/edge/__init__.py", "");
for (const name of readdirSync(join(repo, "edge", "mcu"))) {
  // board.py needs MicroPython's `machine` of a real board; the rest is portable
  if (name.endsWith(".py") && name !== "board.py") {
    mp.FS.writeFile(`/lib/edge/mcu/${name}`, readFileSync(join(repo, "edge", "mcu", name), "utf8"));
  }
}
let code = 0;
try {
  mp.runPython("import sys\nsys.path.insert(0, '/lib')\n" +
               (snippet || "from edge.mcu import selftest\nselftest.run()"));
} catch (error) {
  lines.push(String(error && error.message ? error.message : error));
  code = 1;
}
console.log(lines.join("\n"));
process.exit(code);
