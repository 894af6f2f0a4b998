export * from "./protocol.js";
export * from "./reducer.js";
export * from "./transport.js";
