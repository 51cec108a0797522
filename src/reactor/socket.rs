//! Socket-path safety, binding and peer credentials. (In progress.)
