// Run a GGUF file with llama.cpp through node-llama-cpp (prebuilt llama.cpp binaries from npm).
// Usage: NODE_LLAMA_CPP_ENTRY=/abs/node_modules/node-llama-cpp/dist/index.js node llamacpp_eval.mjs < request.json
// Request: {"model": path, "tokenize": [text...], "greedy": [{"ids": [...], "steps": n}...], "argmax": [[ids]...]}
// Reply (stdout JSON): {"tokenize": [[ids]...], "greedy": [[ids]...], "argmax": [[next-token argmax per position]...]}
import {readFileSync} from "node:fs";
import {pathToFileURL} from "node:url";

const {getLlama} = await import(pathToFileURL(process.env.NODE_LLAMA_CPP_ENTRY).href);
const request = JSON.parse(readFileSync(0, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: request.model});
const context = await model.createContext({contextSize: 512});
const sequence = context.getSequence();

const reply = {tokenize: [], greedy: [], argmax: []};
for (const text of request.tokenize ?? []) {
    reply.tokenize.push(Array.from(model.tokenize(text, true)));
}
for (const {ids, steps} of request.greedy ?? []) {
    await sequence.clearHistory();
    const out = [];
    for await (const token of sequence.evaluate(ids, {temperature: 0})) {
        out.push(token);
        if (out.length >= steps) break;
    }
    reply.greedy.push(out);
}
for (const ids of request.argmax ?? []) {
    await sequence.clearHistory();
    const items = ids.map((token) => [token, {generateNext: {token: true, options: {temperature: 0}}}]);
    const results = await sequence.controlledEvaluate(items);
    reply.argmax.push(results.map((r) => r?.next?.token ?? null));
}
process.stdout.write(JSON.stringify(reply));
await context.dispose();
await model.dispose();
await llama.dispose();
