// @lunark/client: the protocol (types, decisions, wallet and sign-in helpers), the Socket.IO
// transport and the chat reducer, in one import. Each is also its own entry point:
// "@lunark/client/protocol", "@lunark/client/transport", "@lunark/client/reducer".

export * from "./protocol.js";
export * from "./reducer.js";
export * from "./transport.js";
