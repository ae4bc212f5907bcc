fn main() { shm::init(); }
