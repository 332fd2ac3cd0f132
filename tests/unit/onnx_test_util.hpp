// Builds small ONNX models in memory for the importer's tests.
#pragma once

#include <string>
#include <vector>

#include "kiln/import/onnx.hpp"
#include "onnx.pb.h"

namespace kiln::test {

struct ModelBuilder {
  ::onnx::ModelProto m;
  explicit ModelBuilder(int opset, int ir_version = 8) {
    m.set_ir_version(ir_version);
    auto* o = m.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    m.mutable_graph()->set_name("test");
  }
  /// A tensor input; a negative dim becomes the symbolic dim "N".
  void input(const std::string& name, std::vector<std::int64_t> dims, int type = 1) {
    auto* v = m.mutable_graph()->add_input();
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(type);
    t->mutable_shape();  // a known rank, also 0
    for (auto d : dims) {
      auto* dim = t->mutable_shape()->add_dim();
      if (d >= 0)
        dim->set_dim_value(d);
      else
        dim->set_dim_param("N");
    }
  }
  void output(const std::string& name) { m.mutable_graph()->add_output()->set_name(name); }
  ::onnx::NodeProto* node(const std::string& op, std::vector<std::string> in,
                          std::vector<std::string> out, const std::string& name = "") {
    auto* n = m.mutable_graph()->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? op + "_node" : name);
    for (auto& i : in) n->add_input(i);
    for (auto& o : out) n->add_output(o);
    return n;
  }
  ::onnx::TensorProto* initializer(const std::string& name, std::vector<std::int64_t> dims,
                                   std::vector<float> v) {
    auto* t = m.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(1);
    for (auto d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    return t;
  }
  /// A float initializer whose bytes live in `location`, a file beside the model.
  ::onnx::TensorProto* external_initializer(const std::string& name, std::vector<std::int64_t> dims,
                                            const std::string& location) {
    auto* t = m.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(1);
    for (auto d : dims) t->add_dims(d);
    t->set_data_location(::onnx::TensorProto::EXTERNAL);
    auto* loc = t->add_external_data();
    loc->set_key("location");
    loc->set_value(location);
    return t;
  }
  static void ints(::onnx::NodeProto* n, const std::string& name, std::vector<std::int64_t> v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  static void integer(::onnx::NodeProto* n, const std::string& name, std::int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void flt(::onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  std::string bytes() const { return m.SerializeAsString(); }
  Graph load() const { return kiln::onnx::load_model_bytes(bytes(), ""); }
};

}  // namespace kiln::test
