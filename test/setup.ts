// oclif picks src (not dist) only when NODE_ENV says test; set it before any Config.load().
process.env.NODE_ENV = 'test'
