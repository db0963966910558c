# The Vagrant lab's machines, read from inventory/vagrant.yml: the layout Ansible's chaoslab_vagrant
# inventory plugin reads too, so that the VMs and the inventory cannot disagree.
#
#   VagrantLab.machines(ENV, project_dir) -> [{name:, address:, groups:, cpus:, memory:}, ...]
#
# WORKERS sets the number of worker VMs (else the worker VMs Vagrant has made, so that `vagrant destroy`
# after `WORKERS=3 vagrant up` sees all three; else the layout's `workers`). LAB_SUBNET moves the private
# network; LAB_<ROLE>_CPUS and LAB_<ROLE>_MEMORY (ROLE: REDIS, MONITOR, WORKER) size the VMs.
require "ipaddr"
require "yaml"

module VagrantLab
  class Error < StandardError; end

  def self.machines(env, project_dir)
    layout = YAML.safe_load(File.read(File.join(project_dir, "inventory", "vagrant.yml")))
    network = subnet(env.fetch("LAB_SUBNET", "").strip.empty? ? layout.fetch("subnet") : env["LAB_SUBNET"])
    nodes = layout.fetch("nodes").map do |name, spec|
      machine(env, network, name, spec, name.upcase)
    end
    worker = layout.fetch("worker")
    first = Integer(layout.fetch("worker_first_host"))
    (1..worker_count(env, project_dir, layout)).each do |index|
      nodes << machine(env, network, "worker-#{index}", worker.merge("host" => first + index - 1), "WORKER")
    end
    nodes
  end

  def self.worker_count(env, project_dir, layout)
    raw = env.fetch("WORKERS", "").strip
    if raw.empty?
      made = Dir.glob(File.join(project_dir, ".vagrant", "machines", "worker-*", "*", "id"))
                .select { |path| !File.read(path).strip.empty? }
                .map { |path| path.split(File::SEPARATOR)[-3] }.uniq
      return made.empty? ? Integer(layout.fetch("workers")) : made.size
    end
    count = Integer(raw, exception: false)
    raise Error, "WORKERS: #{raw.inspect} is not a whole number of worker VMs" if count.nil?
    raise Error, "WORKERS: #{count} is out of range (1-32)" unless (1..32).cover?(count)
    count
  end

  def self.subnet(value)
    IPAddr.new(value)
  rescue IPAddr::Error => e
    raise Error, "LAB_SUBNET/subnet: #{e.message}"
  end

  def self.machine(env, network, name, spec, role)
    host = Integer(spec.fetch("host"))
    size = network.to_range.count
    raise Error, "#{name}: host number #{host} is not inside #{network}/#{network.prefix}" unless host > 1 && host < size - 1
    {
      name: name,
      address: IPAddr.new(network.to_i + host, Socket::AF_INET).to_s,
      groups: spec.fetch("groups"),
      cpus: Integer(env.fetch("LAB_#{role}_CPUS", spec.fetch("cpus"))),
      memory: Integer(env.fetch("LAB_#{role}_MEMORY", spec.fetch("memory"))),
    }
  end
end
