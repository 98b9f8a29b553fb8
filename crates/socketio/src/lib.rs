//! Engine.IO v4 and Socket.IO v5 over the Roomcast engine.
